"""The logits' change from one moved unit of the last hidden layer but one, as a power series in the unit's change.

When unit i of hidden layer l moves by ``c`` (an (m,) column: one weight or bias of layer l moved), the next
hidden layer, the last one, moves by ``phi(Z + c w^T) - phi(Z)`` with ``w = W_{l+1}[:, i]``, and the logits by that
times ``W_out^T``. For tanh, and for sigmoid through ``sigmoid(x) = (1 + tanh(x / 2)) / 2``, the change of one
element is a power series in ``u = c_s w_n``,

    ``tanh(z + u) - tanh(z) = sum_p a_p(tanh z) u^p``,  ``a_p = D^p(T) / p!`` with ``D q(T) = q'(T) (1 - T^2)``,

so the logits' change is ``sum_p c_s^p B_p[o, i, s]`` with ``B_p[o, i, s] = sum_n a_p[s, n] w_n^p W_out[o, n]``,
one table per order for all the units of the layer (one matrix product each). A perturbed evaluation then costs
``P`` multiply-adds per logit instead of a pass over the (m, n) last hidden layer: at the reference network's
[1024, 768, 256, 10] that pass was nine tenths of the check's time.

The series is used only where it is exact to the dtype: tanh is analytic in the strip ``|Im| < pi/2``, and on the
circle ``|u| = 1`` around a real z, ``|tanh(z + u) - tanh z| <= 1 + tan(1)`` (Cauchy's estimate), so the terms after
``u^P`` sum to at most ``(1 + tan 1) |u|^{P+1} / (1 - |u|)``; the order P is the smallest for which that, times the
largest row sum of ``|W_out|``, stays below an eighth of the dtype's epsilon (a fraction of the rounding of the
logits themselves). Otherwise the caller computes the change exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.polynomial import polynomial
from numpy.typing import NDArray

from preflight._util.aliases import Params
from preflight.nn.network import DropoutMasks, Network

__all__ = ["MAX_ORDER", "LogitSeries", "tanh_shift_coefficients"]

A = NDArray[Any]
#: Highest order tried; a move that needs more goes the exact way (at gradient-check steps 3 or 4 suffice).
MAX_ORDER = 8
#: ``max |tanh(z + u) - tanh(z)|`` over ``|u| = 1``, z real: ``|tanh(x + iy)| <= max(1, tan|y|)`` for ``|y| < pi/2``.
_CAUCHY_BOUND = 1.0 + math.tan(1.0)


def tanh_shift_coefficients(order: int) -> list[A]:
    """Polynomials (NumPy coefficient arrays, lowest first) ``a_1 .. a_order`` in ``T = tanh z`` with
    ``tanh(z + u) = tanh z + sum_p a_p(T) u^p``.

    Examples
    --------
    >>> [c.tolist() for c in tanh_shift_coefficients(2)]
    [[1.0, 0.0, -1.0], [0.0, -1.0, 0.0, 1.0]]
    """
    out, q = [], np.array([0.0, 1.0])
    for p in range(1, order + 1):
        q = polynomial.polymul(polynomial.polyder(q), [1.0, 0.0, -1.0]) / p
        out.append(q)
    return out


class LogitSeries:
    """The logits' change for moves of single units of hidden layer ``l``, when layer ``l + 1`` is the last hidden
    layer (tanh or sigmoid) and no dropout acts.

    Parameters
    ----------
    hidden : array (m, n)
        The last hidden layer's activations ``A_{l+1}`` at the unperturbed parameters.
    weights : array (n, units)
        ``W_{l+1}``: column i carries unit i's change into the last hidden layer.
    output : array (n_out, n)
        ``W_out``.
    sigmoid : bool
        The last hidden layer's activation is sigmoid (else tanh).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(4, 3)); w = rng.normal(size=(3, 2)); v = rng.normal(size=(2, 3))
    >>> c = np.array([[1e-4, -2e-4, 3e-4, 0.0]])
    >>> moved = np.tanh(z + c[0][:, None] * w[:, 1]) @ v.T - np.tanh(z) @ v.T
    >>> series = LogitSeries(np.tanh(z), w, v, sigmoid=False).changes(np.array([1]), c)
    >>> bool(np.allclose(series[:, 0, :], moved.T, rtol=0, atol=1e-15))
    True
    """

    def __init__(self, hidden: A, weights: A, output: A, *, sigmoid: bool) -> None:
        self.dtype = hidden.dtype
        self.half = 0.5 if sigmoid else 1.0
        self.level = 2 * hidden - 1 if sigmoid else hidden
        self.weights = weights * self.dtype.type(self.half)
        self.output = output
        self.largest_weight = float(np.max(np.abs(self.weights), initial=0.0))
        self.row_sum = float(np.max(np.sum(np.abs(output), axis=1), initial=0.0))
        self._tables: list[A] = []

    @classmethod
    def for_layer(
        cls, net: Network, params: Params, hidden: list[A], layer: int, masks: DropoutMasks | None
    ) -> LogitSeries | None:
        """The series for moves of ``net``'s hidden layer ``layer`` (params in rows, ``hidden`` the activations),
        or None unless the next layer is the last hidden one, tanh or sigmoid, and no dropout acts."""
        depth, name = net.depth, net.hidden[layer] if layer < len(net.hidden) else ""
        if layer + 2 != depth or masks is not None or name not in ("tanh", "sigmoid"):
            return None
        return cls(hidden[layer], params[f"W{layer + 1}"], params[f"W{depth}"], sigmoid=name == "sigmoid")

    def order(self, largest_change: float) -> int:
        """The order P that makes the series exact for moves up to ``largest_change``; 0 when none up to
        :data:`MAX_ORDER` does."""
        u = largest_change * self.largest_weight
        if u >= 0.5:
            return 0
        budget = float(np.finfo(self.dtype).eps) / 8
        for p in range(1, MAX_ORDER + 1):
            if self.half * _CAUCHY_BOUND * u ** (p + 1) / (1 - u) * self.row_sum <= budget:
                return p
        return 0

    def changes(self, units: NDArray[np.intp], c: A) -> A | None:
        """The logits' change, laid out (n_out, K, m), for K moves: unit ``units[k]`` moving by ``c[k]`` (an (m,)
        row); None when the series would not be exact to the dtype."""
        p = self.order(float(np.max(np.abs(c), initial=0.0)))
        if p == 0:
            return None
        tables = self._tables_up_to(p)
        out: A = tables[p - 1][:, units, :]
        for q in range(p - 2, -1, -1):
            out *= c
            out += tables[q][:, units, :]
        out *= c
        return out

    def _tables_up_to(self, order: int) -> list[A]:
        """``B_1 .. B_order``, each (n_out, units, m), computed once per order."""
        if len(self._tables) < order:
            polys = tanh_shift_coefficients(order)
            m, n = self.level.shape
            n_out, units = self.output.shape[0], self.weights.shape[1]
            power = np.ones_like(self.weights)
            for p in range(1, order + 1):
                power = power * self.weights
                if p <= len(self._tables):
                    continue
                a = polynomial.polyval(self.level, polys[p - 1].astype(self.dtype)).astype(self.dtype)
                a *= self.dtype.type(self.half)
                scaled = (a[:, None, :] * self.output[None, :, :]).reshape(m * n_out, n)
                table = (scaled @ power).reshape(m, n_out, units)
                self._tables.append(np.ascontiguousarray(table.transpose(1, 2, 0)))
        return self._tables
