"""Hessian-vector products of the reference network's cost, by the R-operator (Pearlmutter 1994), written by hand.

Pearlmutter's ``R{f} = d/dr f(theta + r v)`` at ``r = 0`` is applied to every line of the forward and the backward
pass, as backprop applies the chain rule to every line of the forward pass. In rows (``Z_l = A_{l-1} W_l^T + b_l``),
with ``V_l, c_l`` the direction's weights and biases and ``D_l`` the dropout scaling of layer l (its frozen mask over
``keep_prob``, 1 without dropout):

forward
    ``R{A_0} = 0``; ``R{Z_l} = R{A_{l-1}} W_l^T + A_{l-1} V_l^T + c_l``; ``R{A_l} = phi'(Z_l) R{Z_l} D_l``.
backward
    ``R{dZ_L} = head''(Z_L) R{Z_L} / m`` (the loss's Hessian in the logits times ``R{Z_L}``: see
    :meth:`preflight.nn.Head.curvature`);
    ``R{dW_l} = R{dZ_l}^T A_{l-1} + dZ_l^T R{A_{l-1}} + (lambda / m) V_l``; ``R{db_l} = sum R{dZ_l}``;
    ``R{dA_{l-1}} = (R{dZ_l} W_l + dZ_l V_l) D_{l-1}``;
    ``R{dZ_{l-1}} = R{dA_{l-1}} phi'(Z_{l-1}) + dA_{l-1} phi''(Z_{l-1}) R{Z_{l-1}}``.

One forward, one R-forward, one backward and one R-backward: about twice the cost of the gradient, exactly ``H v``
(no finite difference). ``phi''`` is 0 for ReLU, leaky ReLU and linear (also at their kinks, as autograd's double
backward takes it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from preflight._util.aliases import Params
from preflight._util.validation import describe
from preflight.nn.layout import params_in_layout

if TYPE_CHECKING:
    from preflight.nn.network import DropoutMasks, Network, Trace

__all__ = ["RBackward", "hvp", "r_backward", "r_forward"]

A = NDArray[Any]
#: The R-backward pass: ``(net, params, v, trace, r_logits, r_inputs, targets, masks) -> R{gradients}`` (in rows).
RBackward = Callable[..., Params]


def r_forward(
    net: Network, params: Params, v: Params, trace: Trace, masks: DropoutMasks | None
) -> tuple[list[A], list[A]]:
    """``R{Z_l}`` for every layer and ``R{A_l}`` for every layer's input (``R{A_0} = 0``), in rows."""
    dtype = trace.inputs[0].dtype.type
    scale = dtype(1.0 / net.keep_prob)
    r_inputs: list[A] = [np.zeros_like(trace.inputs[0])]
    r_logits: list[A] = []
    for layer in range(1, net.depth + 1):
        a, r_a = trace.inputs[layer - 1], r_inputs[layer - 1]
        r_z = r_a @ params[f"W{layer}"].T + a @ v[f"W{layer}"].T + v[f"b{layer}"]
        r_logits.append(r_z)
        if layer < net.depth:
            z, phi = trace.logits[layer - 1], trace.activations[layer - 1]
            r_next = net.activation(layer).derivative(z, phi) * r_z
            r_inputs.append(r_next * masks[layer - 1] * scale if masks is not None else r_next)
    return r_logits, r_inputs


def r_backward(
    net: Network,
    params: Params,
    v: Params,
    trace: Trace,
    r_logits: list[A],
    r_inputs: list[A],
    targets: A,
    masks: DropoutMasks | None,
    *,
    without: Literal["product-rule", "curvature"] | None = None,
) -> Params:
    """``R{dW_l}, R{db_l}`` for every layer (the module docstring's backward lines), in rows.

    ``without`` leaves one term out, as the planted bugs of :mod:`preflight.nn.bugs` do: ``"product-rule"`` the
    term ``dZ_l V_l`` of ``R{dA_{l-1}}``, ``"curvature"`` the term ``dA phi''(Z) R{Z}`` of ``R{dZ}``.
    """
    m = targets.shape[0]
    dtype = targets.dtype.type
    scale = dtype(1.0 / net.keep_prob)
    dz = net.head.delta(trace.logits[-1], targets) / dtype(m)
    r_dz = net.head.curvature(trace.logits[-1], r_logits[-1]) / dtype(m)
    out: Params = {}
    for layer in range(net.depth, 0, -1):
        w, r_w = params[f"W{layer}"], v[f"W{layer}"]
        out[f"W{layer}"] = r_dz.T @ trace.inputs[layer - 1] + dz.T @ r_inputs[layer - 1] + dtype(net.l2 / m) * r_w
        out[f"b{layer}"] = r_dz.sum(axis=0)
        if layer > 1:
            da, r_da = dz @ w, r_dz @ w
            if without != "product-rule":
                r_da = r_da + dz @ r_w
            if masks is not None:
                da, r_da = da * masks[layer - 2] * scale, r_da * masks[layer - 2] * scale
            z, phi = trace.logits[layer - 2], trace.activations[layer - 2]
            activation = net.activation(layer - 1)
            first = activation.derivative(z, phi)
            r_dz = r_da * first
            if without != "curvature":
                r_dz = r_dz + da * activation.second_derivative(z, phi) * r_logits[layer - 2]
            dz = da * first
    return {name: out[name] for name in net.shapes()}


def hvp(
    net: Network,
    params: Params,
    X: Any,
    y: Any,
    v: Params,
    *,
    masks: DropoutMasks | None = None,
    backward: RBackward = r_backward,
) -> Params:
    """The Hessian of ``net.cost(params, X, y)`` times ``v``, by the R-operator (:meth:`Network.hvp` calls it).

    Parameters
    ----------
    net : Network
    params : dict of arrays
        As for :meth:`Network.cost` (in the network's layout).
    X, y
        The batch, as for :meth:`Network.cost`.
    v : dict of arrays
        The direction: the keys and shapes of ``params`` (cast to their dtype).
    masks : tuple of bool arrays, optional
        Frozen dropout masks (:meth:`Network.dropout_masks`); required when ``keep_prob < 1`` (a Hessian of a
        random cost means nothing).
    backward : callable
        The R-backward pass (a planted bug replaces it: :mod:`preflight.nn.bugs`).

    Returns
    -------
    dict of arrays
        ``H v``: the keys, shapes (layout) and dtype of ``params``.

    Raises
    ------
    ValueError
        ``v`` not shaped like ``params`` or not finite; dropout without ``masks``; what :meth:`Network.cost`
        rejects.

    Examples
    --------
    >>> from preflight.nn import Network
    >>> net = Network([2, 3, 1], hidden="tanh", output="linear")
    >>> params = net.init(0, "lecun"); X = np.array([[0.5, -1.0], [1.0, 2.0]]); y = np.array([0.0, 1.0])
    >>> v = {name: np.ones_like(p) for name, p in params.items()}
    >>> Hv = hvp(net, params, X, y, v)
    >>> def moved(h): return {n: p + h * v[n] for n, p in params.items()}
    >>> numeric = (net.gradients(moved(1e-5), X, y)["W1"] - net.gradients(moved(-1e-5), X, y)["W1"]) / 2e-5
    >>> bool(np.allclose(Hv["W1"], numeric, rtol=1e-7, atol=1e-9))
    True
    """
    dtype, X = net._inputs(params, X)
    if net.keep_prob < 1.0 and masks is None:
        raise ValueError(
            f"masks: expected frozen dropout masks (keep_prob = {net.keep_prob}): pass masks=net.dropout_masks(rng, m),"
            " the same ones the cost and gradients use"
        )
    frozen = net._masks(X.shape[0], None, masks) if masks is not None else None
    targets = net._targets(X, y)
    direction = _direction(net, v, dtype)
    rows, v_rows = net.in_rows(params), net.in_rows(direction)
    trace = net._forward_pass(rows, X, frozen)
    r_logits, r_inputs = r_forward(net, rows, v_rows, trace, frozen)
    return params_in_layout(backward(net, rows, v_rows, trace, r_logits, r_inputs, targets, frozen), net.layout)


def _direction(net: Network, v: Any, dtype: np.dtype[Any]) -> Params:
    """``v`` validated against the network's parameter shapes, in the parameters' dtype."""
    expected = net.shapes()
    if not isinstance(v, dict) or set(v) != set(expected):
        keys = sorted(v) if isinstance(v, dict) else describe(v)
        raise ValueError(f"v: expected a dict with the keys of params {list(expected)}, got {keys}")
    out: Params = {}
    for name, shape in expected.items():
        value = np.asarray(v[name])
        if value.shape != shape or not np.issubdtype(value.dtype, np.number):
            raise ValueError(
                f"v[{name!r}]: expected a numeric array of shape {shape} (as params), got {describe(v[name])}"
            )
        if not np.all(np.isfinite(value)):
            raise ValueError(f"v[{name!r}]: expected finite values, got NaN or inf")
        out[name] = value.astype(dtype, copy=False)
    return out
