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

Where kinks were set aside and the loss computes in float64 at float64 copies of the parameters (a NumPy loss:
float32 data are promoted), :func:`wide_pooled_look` reads the same direction there instead, along
:data:`WIDE_SCALE` of it, where almost no kink is crossed, with the analytic value held to the float32 look's
allowance. In learners' float32 ReLU networks (tests/numpy_nets.py) that catches every scale error of 1e-3 and more
the coordinates pass at initialization (benchmarks/numpy_float32_bugs.py), with no false alarm on correct networks
at initialization or after training (benchmarks/numpy_float32_correct.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from preflight.check import numdiff
from preflight.check.dense import GRID, closer_look
from preflight.check.inputs import Leaves, moved_all
from preflight.check.kinks import ROUNDING_FACTOR, SCALES, judge
from preflight.check.verdict import ANALYTIC_FACTOR, TensorCheck

if TYPE_CHECKING:
    from preflight.check.float64_look import Float64Copy

__all__ = ["WIDE_SCALE", "Pooled", "pooled_look", "wide_pooled_look"]

F64 = NDArray[np.float64]
#: The pooled look at float64 copies moves along ``WIDE_SCALE`` times the float32 direction: a unit crosses its kink
#: there only within 2^-20 of what float32's step reaches (at 2^-10, a ReLU network trained 1000 steps, 489 of 640
#: coordinates of W1 set aside as kinks in float32, still bent the direction by 1e-3 of its slope), while the float64
#: loss's rounding (2^-29 of float32's) over the shorter move stays 2^-9 of what the float32 look allows.
WIDE_SCALE = 2.0**-20


@dataclass(frozen=True)
class Pooled:
    """A tensor whose loss, moved along its analytic gradient, disagrees with it."""

    name: str
    coordinates: int
    numeric: float
    analytic: float
    tolerance: float
    #: Where the loss was read: "" (the check's own float32 values) or the float64 copies.
    where: str = ""

    def note(self) -> str:
        """What the report says."""
        ratio = self.analytic / self.numeric if self.numeric else float("inf")
        excess = abs(self.analytic - self.numeric) / self.tolerance
        return (
            f"{self.name}: moved along its analytic gradient (its {self.coordinates:,} coordinates together"
            f"{self.where}), the loss changes at {self.numeric:.6g} where the gradient says {self.analytic:.6g} "
            f"(analytic = {ratio:.5f} x numeric, {excess:.1f} x the tolerance): an error shared by many coordinates "
            "(a wrong constant or scale, a dropped small term), each inside what one coordinate resolves in float32"
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
    direction = _direction(t, eps)
    if direction is None:
        return None
    s, allowed = direction
    return _along(t.name, t.g, s, leaves, value, f0, sigma, allowed, "")


def wide_pooled_look(t: TensorCheck, copy: Float64Copy, sigma: float, eps: float | None = None) -> Pooled | None:
    """The pooled look at float32 tensor ``t`` read at float64 copies of the parameters (``copy``), or None (also
    where the loss does not compute in float64 there): for a check that set kinks aside, which would bend float32
    values along the direction. The float64 loss is read along :data:`WIDE_SCALE` times the float32 direction, and
    the analytic value held to what the float32 pooled look allows (``sigma`` is the float32 loss's noise): its
    float32 resolution along the direction stands, only the kinks its step crosses are gone. (Not to float64's
    precision: a correct float32 backward errs coherently along its own gradient, more as training shrinks the
    gradient; at most 4 % of that allowance in benchmarks/numpy_float32_correct.py, up to 2000 steps of training.)

    Examples
    --------
    >>> import numpy as np
    >>> from preflight.check.float64_look import Float64Copy
    >>> from preflight.check.verdict import TensorCheck
    >>> w = np.linspace(-1.5, 1.5, 64).astype(np.float32)
    >>> loss = lambda p: float(np.sum(np.maximum(p["w"], 0.0) ** 2 + p["w"]))  # a kink at 0 for every entry
    >>> copy = Float64Copy(loss, {"w": w}, seed=0)
    >>> grad = 2 * np.maximum(w, 0.0).astype(np.float64) + 1
    >>> wide_pooled_look(TensorCheck("w", w, np.arange(0), grad), copy, 1e-6) is None
    True
    >>> wide_pooled_look(TensorCheck("w", w, np.arange(0), 1.004 * grad), copy, 1e-6).coordinates
    64
    """
    direction = _direction(t, eps)
    if direction is None or not copy.available:
        return None
    s, allowed = direction
    # The float32 look's allowance along s: the analytic rounding and judge's rounding term at one unit of s.
    allowed += 1.5 * ROUNDING_FACTOR * sigma
    where = ", at float64 copies of the parameters: float32 values along it cross kinks"
    return _along(t.name, t.g, WIDE_SCALE * s, copy.leaves, copy.box.value, copy.f0, copy.sigma,
                  WIDE_SCALE * allowed, where)  # fmt: skip


def _direction(t: TensorCheck, eps: float | None) -> tuple[F64, float] | None:
    """The direction ``s`` along ``t``'s analytic gradient (its largest entry moving its coordinate by the float32
    step) and the analytic gradient's rounding along it; None for a zero or non-finite gradient."""
    flat_g = t.g.reshape(-1).astype(np.float64)
    if not np.any(flat_g) or not np.all(np.isfinite(flat_g)):
        return None
    h = numdiff.step_size(t.arr, eps=eps).astype(np.float64).reshape(-1)
    rms = float(np.sqrt(np.mean(flat_g**2)))
    rounding = ANALYTIC_FACTOR * numdiff.machine_epsilon(t.arr.dtype) * (np.abs(flat_g) + rms)
    s = flat_g / np.max(np.abs(flat_g)) * h  # the largest entry moves its coordinate by its own step
    return s, float(np.vdot(rounding, np.abs(s)))


def _along(
    name: str, g: F64, s: F64, leaves: Leaves, value: Callable[[], float], f0: float, sigma: float, allowed: float,
    where: str,
) -> Pooled | None:  # fmt: skip
    """Tensor ``name`` of ``leaves`` moved along ``s``: its failure against the analytic ``g . s``, or None."""
    arr = leaves[name]
    flat_g = g.reshape(-1).astype(np.float64)
    saved = arr.reshape(-1).astype(np.float64)

    def at(scales: tuple[float, ...], f: dict[float, F64]) -> None:
        with moved_all(leaves) as move:
            for k in scales:
                move({name: (k * s).reshape(arr.shape)})
                # The value as if the move had been exactly k s: each coordinate's rounding to the dtype, times its
                # analytic derivative, taken out (a float32 move of a few 1e-3 errs by ~1e-5 of itself).
                moved = arr.reshape(-1).astype(np.float64) - saved
                f[k] = np.array([value() - float(np.vdot(flat_g, moved - k * s))])

    # One virtual coordinate, as arrays of one entry: the values at k s, the positions in units of s.
    values: dict[float, F64] = {0.0: np.array([f0])}
    at(SCALES, values)
    analytic = np.array([np.vdot(flat_g, s)])
    tolerance = np.array([allowed])
    j = judge(values, {k: np.array([k]) for k in values}, analytic, tolerance, sigma)
    if j.settled[0]:
        return None
    numeric, allowance = float(j.numeric[0]), float(j.tolerance[0])
    if j.kink[0] or j.near[0]:
        at(tuple(k for k in GRID if k not in values), values)
        look = closer_look(values, {k: np.array([k]) for k in values}, np.ones(1), analytic, tolerance, sigma)
        fails = not look.kink[0] and abs(analytic[0] - look.numeric[0]) > look.tolerance[0]
        if not fails or (j.kink[0] and not look.off[0]):
            return None
        numeric, allowance = float(look.numeric[0]), float(look.tolerance[0])
    return Pooled(name, int(np.count_nonzero(flat_g)), numeric, float(analytic[0]), allowance, where)
