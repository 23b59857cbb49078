"""Planted bugs in the reference network's backward pass, for tests and demonstrations of the gradient checker.

``BuggyNetwork(sizes, ..., bug="factor-2")`` is a :class:`preflight.nn.Network` whose forward pass and cost are
right and whose backward pass has one classic mistake; :data:`BUGS` lists them with the tensor each one breaks.
:data:`HVP_BUGS` are mistakes in its Hessian-vector product (:meth:`Network.hvp`, the R-operator) instead: the
gradient stays right, only a second-order check (``preflight.gradcheck(..., hvp=...)``) sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from preflight._util.aliases import Params
from preflight._util.validation import check_choice
from preflight.nn.hessian import hvp, r_backward
from preflight.nn.layout import Layout
from preflight.nn.network import DropoutMasks, Network, Trace

__all__ = ["BUGS", "HVP_BUGS", "BuggyNetwork", "broken_tensors"]

A = NDArray[Any]
#: Bug name -> what is wrong (as a student would write it).
BUGS: dict[str, str] = {
    "factor-2": "dW2 is doubled (a stray factor 2: d(w^2) = 2w applied twice)",
    "bias-no-1/m": "db1 = sum(dZ1) without the 1/m",
    "sign": "dW of the last layer has the wrong sign",
    "missing-l2": "the L2 term (lambda/m) W1 is missing from dW1 (needs l2 > 0)",
    "activation-derivative": "the derivative of the first hidden activation is wrong (tanh: 1 - a; ReLU: 1)",
    "transposed": "dW of the first square layer is transposed",
    "dropout-backward": "the dropout mask is not applied in the backward pass (needs keep_prob < 1 and masks)",
    "missing-1/m-output": "dZ at the output is not divided by m",
    "one-element": "one element of dW1 is wrong (an index off by one)",
    "course": "the course's N-dimensional exercise: dW2 doubled and db1 multiplied by 4",
}
#: Bug name -> what is wrong in the R-operator of :meth:`Network.hvp` (the gradient itself is right).
HVP_BUGS: dict[str, str] = {
    "hvp-product-rule": "R{dA} = R{dZ} W: the product rule's second term dZ V (the direction's own weights) is "
    "missing, so H v of every layer below the last is wrong",
    "hvp-activation-curvature": "the activations' second derivative is missing (phi''(Z) R{Z} dA): invisible with "
    "relu, leaky_relu and linear (phi'' = 0 there), wrong below the last layer with tanh or sigmoid",
}
#: The term of :func:`preflight.nn.hessian.r_backward` each hvp bug leaves out.
_HVP_TERMS: dict[str, Literal["product-rule", "curvature"]] = {
    "hvp-product-rule": "product-rule",
    "hvp-activation-curvature": "curvature",
}


def _wrong_derivative(name: str, z: A, a: A) -> A:
    """A classic wrong derivative for each activation."""
    if name == "tanh":
        return 1 - a
    if name == "sigmoid":
        return a
    if name == "linear":
        return np.full_like(z, 2)
    return np.ones_like(z)  # relu, leaky_relu: the mask forgotten


def broken_tensors(net: Network, bug: str) -> set[str]:
    """The tensors whose gradient the bug changes directly (a bug upstream reaches all tensors before it); for a bug
    of :data:`HVP_BUGS`, the tensors whose block of ``H v`` it changes."""
    check_choice(bug, name="bug", allowed={**BUGS, **HVP_BUGS})
    last = net.depth
    if bug in HVP_BUGS:
        return {name for name in net.shapes() if name[1:] != str(last)}
    direct = {
        "factor-2": {"W2"},
        "bias-no-1/m": {"b1"},
        "sign": {f"W{last}"},
        "missing-l2": {"W1"},
        "activation-derivative": {"W1", "b1"},
        "transposed": {f"W{_square_layer(net)}"},
        "dropout-backward": {n for n in net.shapes() if n[1:] != str(last)},
        "missing-1/m-output": set(net.shapes()),
        "one-element": {"W1"},
        "course": {"W2", "b1"},
    }
    return direct[bug]


def _square_layer(net: Network) -> int:
    for layer in range(1, net.depth + 1):
        if net.sizes[layer] == net.sizes[layer - 1]:
            return layer
    raise ValueError(f"bug: 'transposed' needs a square layer (n_l == n_(l-1)), sizes are {net.sizes}")


class BuggyNetwork(Network):
    """The reference network with one planted bug in its backward pass.

    Parameters
    ----------
    sizes, hidden, output, l2, keep_prob, layout
        As :class:`preflight.nn.Network`.
    bug : str
        One of :data:`BUGS`.

    Examples
    --------
    >>> net = BuggyNetwork([3, 4, 2], hidden="tanh", output="softmax", bug="factor-2")
    >>> params = net.init(0, "glorot"); X = np.ones((5, 3)); y = np.array([0, 1, 0, 1, 1])
    >>> good = Network.gradients(Network([3, 4, 2], "tanh", "softmax"), params, X, y)
    >>> bool(np.allclose(net.gradients(params, X, y)["W2"], 2 * good["W2"]))
    True
    """

    def __init__(
        self,
        sizes: Sequence[int],
        hidden: str | Sequence[str] = "relu",
        output: str = "sigmoid",
        *,
        l2: float = 0.0,
        keep_prob: float = 1.0,
        bug: str,
        layout: Layout = "rows",
    ) -> None:
        super().__init__(sizes, hidden, output, l2=l2, keep_prob=keep_prob, layout=layout)
        self.bug = check_choice(bug, name="bug", allowed={**BUGS, **HVP_BUGS})
        if bug in ("factor-2", "course") and self.depth < 2:
            raise ValueError(f"bug: {bug!r} needs at least 2 layers, sizes are {self.sizes}")
        if bug == "transposed":
            _square_layer(self)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", bug={self.bug!r})"

    def hvp(self, params: Params, X: Any, y: Any, v: Params, *, masks: DropoutMasks | None = None) -> Params:
        """:meth:`Network.hvp`, with the planted bug when it is one of :data:`HVP_BUGS` (its R-backward pass
        without the term the bug drops)."""
        backward = partial(r_backward, without=_HVP_TERMS.get(self.bug))
        return hvp(self, params, X, y, v, masks=masks, backward=backward)

    def _backward(self, params: Params, cache: Trace, targets: A, masks: DropoutMasks | None) -> Params:
        m = targets.shape[0]
        dtype = targets.dtype.type
        bug = self.bug
        scale = dtype(1.0 / self.keep_prob)
        dz = self.head.delta(cache.logits[-1], targets)
        if bug != "missing-1/m-output":
            dz = dz / dtype(m)
        grads: Params = {}
        for layer in range(self.depth, 0, -1):
            w = params[f"W{layer}"]
            l2 = dtype(0.0 if bug == "missing-l2" and layer == 1 else self.l2 / m)
            dw = dz.T @ cache.inputs[layer - 1] + l2 * w
            db = dz.sum(axis=0)
            if bug in ("factor-2", "course") and layer == 2:
                dw = 2 * dw
            if bug == "sign" and layer == self.depth:
                dw = -dw
            if bug == "transposed" and layer == _square_layer(self):
                dw = dw.T.copy()
            if bug == "bias-no-1/m" and layer == 1:
                db = db * dtype(m)
            if bug == "course" and layer == 1:
                db = 4 * db
            if bug == "one-element" and layer == 1:
                dw = dw.copy()
                dw.flat[min(1, dw.size - 1)] += dtype(0.5 * float(np.abs(dw).max()) + 0.01)
            grads[f"W{layer}"], grads[f"b{layer}"] = dw, db
            if layer > 1:
                da = dz @ w
                if masks is not None and bug != "dropout-backward":
                    da = da * masks[layer - 2] * scale
                z, a = cache.logits[layer - 2], cache.activations[layer - 2]
                if bug == "activation-derivative" and layer == 2:
                    dz = da * _wrong_derivative(self.hidden[0], z, a).astype(z.dtype, copy=False)
                else:
                    dz = da * self.activation(layer - 1).derivative(z, a)
        return {name: grads[name] for name in self.shapes()}
