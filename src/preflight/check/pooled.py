"""The pooled look at a float32 tensor: all its coordinates moved together, where one coordinate resolves too little.

A coordinate's difference resolves its derivative to a few noise units over its step: in float32, about 1e-4 of a
tensor's largest element, and a typical element less. An error that many coordinates share (a wrong constant, a
scale off by 1e-3, a dropped small term) can stay inside that in every coordinate. Moved together along a direction
``s``, the loss changes by ``g . s`` where the analytic gradient says ``a . s``: the same noise against the signal of
every coordinate at once. Along ``s`` proportional to ``a``, each coordinate moving at most its own step ``h``, a wrong
scale ``1 + delta`` shows as ``delta |a|^2 / max|a| h``, ``|a|^2 / max|a|^2`` times what the largest coordinate shows
alone (the tensor's effective number of coordinates: hundreds in a weight matrix). (Not along the first pass's
discrepancies ``a - numeric``: beside ReLU kinks those hold each coordinate's kink bias, which moving along them
adds up coherently, beyond what the closer look sets aside: 18 false alarms in 240 correct float32 nets.)

Each direction is one virtual coordinate, judged as a coordinate's second look is
(:func:`preflight.check.verdict.second_look`): Richardson with its truncation measured, the kink test, and where
the loss is not smooth along the direction (ReLU units crossing zero as many coordinates move at once), the closer
look (:func:`preflight.check.dense.closer_look`), which sets it aside where it sees kinks explain the values.
Run on tensors whose loss rounds at float32's precision or coarser (in float64 each coordinate already resolves
errors of 1e-8 of an element), and only where no coordinate of the check was set aside as a kink: moved together
along the gradient, a layer's coordinates shift its pre-activations coherently, by up to ``sqrt(fan_in)`` times one
coordinate's move, and a unit parked within h/16 of its kink for every coordinate (tests/layers/parked.py) sits
closer to the point along the direction than the closer look's grid resolves (it failed a correct leaky-ReLU MLP
there at 3 % and 7 %).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from preflight.check import numdiff
from preflight.check.dense import GRID, closer_look
from preflight.check.inputs import Leaves, moved_all
from preflight.check.kinks import SCALES, judge
from preflight.check.verdict import ANALYTIC_FACTOR, TensorCheck

__all__ = ["Pooled", "pooled_look"]

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Pooled:
    """A tensor whose loss, moved along its analytic gradient, disagrees with it."""

    name: str
    coordinates: int
    numeric: float
    analytic: float
    tolerance: float

    def note(self) -> str:
        """What the report says."""
        ratio = self.analytic / self.numeric if self.numeric else float("inf")
        return (
            f"{self.name}: moved along its analytic gradient (its {self.coordinates:,} coordinates together), the loss "
            f"changes at {self.numeric:.6g} where the gradient says {self.analytic:.6g} (analytic = {ratio:.5f} x "
            f"numeric, {abs(self.analytic - self.numeric) / self.tolerance:.1f} x the tolerance): an error shared by "
            "many coordinates (a wrong constant or scale, a dropped small term), each inside what one coordinate "
            "resolves in float32"
        )


def pooled_look(
    t: TensorCheck, leaves: Leaves, value: Callable[[], float], f0: float, sigma: float, eps: float | None = None
) -> Pooled | None:
    """Tensor ``t``'s failure along its analytic gradient, or None. ``value()`` is the loss at the leaves as they are
    (moved in place and restored), ``f0`` its value at the point, ``sigma`` its measured rounding noise. A direction
    is judged as a coordinate's second look judges (:func:`preflight.check.verdict.second_look`): Richardson and
    the kink test, then, where that sees a kink or cannot tell, the closer look along the direction.

    Examples
    --------
    >>> import numpy as np
    >>> from preflight.check.verdict import TensorCheck
    >>> w = np.linspace(0.5, 1.5, 64).astype(np.float32)
    >>> leaves = {"w": w}
    >>> value = lambda: float(np.sum(w.astype(np.float32) ** 2))      # gradient 2 w
    >>> ok = TensorCheck("w", w, np.arange(0), (2 * w).astype(np.float64))
    >>> pooled_look(ok, leaves, value, value(), 1e-6) is None
    True
    >>> off = TensorCheck("w", w, np.arange(0), (2.01 * w).astype(np.float64))  # 0.5 % too large
    >>> pooled_look(off, leaves, value, value(), 1e-6).coordinates
    64
    """
    flat_g = t.g.reshape(-1).astype(np.float64)
    if not np.any(flat_g) or not np.all(np.isfinite(flat_g)):
        return None
    h = numdiff.step_size(t.arr, eps=eps).astype(np.float64).reshape(-1)
    rms = float(np.sqrt(np.mean(flat_g**2)))
    rounding = ANALYTIC_FACTOR * numdiff.machine_epsilon(t.arr.dtype) * (np.abs(flat_g) + rms)
    saved = t.arr.reshape(-1).astype(np.float64)
    s = flat_g / np.max(np.abs(flat_g)) * h  # the largest entry moves its coordinate by its own step

    def at(scales: tuple[float, ...], f: dict[float, F64]) -> None:
        with moved_all(leaves) as move:
            for k in scales:
                move({t.name: (k * s).reshape(t.arr.shape)})
                # The value as if the move had been exactly k s: each coordinate's rounding to the dtype, times its
                # analytic derivative, taken out (a float32 move of a few 1e-3 errs by ~1e-5 of itself).
                moved = t.arr.reshape(-1).astype(np.float64) - saved
                f[k] = np.array([value() - float(np.vdot(flat_g, moved - k * s))])

    # One virtual coordinate, as arrays of one entry: the values at k s, the positions in units of s.
    values: dict[float, F64] = {0.0: np.array([f0])}
    at(SCALES, values)
    analytic = np.array([np.vdot(flat_g, s)])
    tolerance = np.array([np.vdot(rounding, np.abs(s))])
    j = judge(values, {k: np.array([k]) for k in values}, analytic, tolerance, sigma)
    if j.settled[0]:
        return None
    numeric, allowed = float(j.numeric[0]), float(j.tolerance[0])
    if j.kink[0] or j.near[0]:
        at(tuple(k for k in GRID if k not in values), values)
        look = closer_look(values, {k: np.array([k]) for k in values}, np.ones(1), analytic, tolerance, sigma)
        fails = not look.kink[0] and abs(analytic[0] - look.numeric[0]) > look.tolerance[0]
        if not fails or (j.kink[0] and not look.off[0]):
            return None
        numeric, allowed = float(look.numeric[0]), float(look.tolerance[0])
    return Pooled(t.name, int(np.count_nonzero(flat_g)), numeric, float(analytic[0]), allowed)
