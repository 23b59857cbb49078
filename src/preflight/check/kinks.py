"""The second look at a coordinate whose first difference disagrees: Richardson at h, then kinks and ties.

Every checker (a loss's gradient, a function's Jacobian) hands over the values ``f`` at the signed positions
``x_k = k h`` for ``k in (-2, -1, -1/16, 0, 1/16, 1, 2)`` and the rounding noise ``sigma`` of one value. The arrays may
be of any shape (one coordinate per entry, or one row per output projection); everything broadcasts.

1. Richardson extrapolation ``(4 D(h) - D(2h)) / 3`` with its truncation estimate: a smooth function settles here.
2. Otherwise, the derivative at 0 from each side alone, free of curvature: the three-point one-sided formula through
   ``(0, x1, x2)`` cancels ``f''``, and extrapolating two of them (``x2 = h`` and ``2h``) cancels ``f'''`` too. Those
   left and right values agree for a smooth function whatever its curvature, so a smooth function is never excused.
   A kink (ReLU at 0, max, abs) or a tie shows as left and right values that disagree beyond their rounding, or as
   one side that disagrees with the short central difference over ``[-h/16, h/16]``. The analytic value is then
   judged against the side the point belongs to:

   - a kink at 0 (both sides agree with nothing across): any value between the left and right derivative
     (a subgradient, as autograd returns for ``relu`` at 0);
   - a kink on one side within the step: the other side's value;
   - kinks on both sides outside ``[-h/16, h/16]``: the short central difference.

A coordinate excused so is a *kink*: set aside, counted and listed, never a pass of a smooth function.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["KINK_EVIDENCE", "ROUNDING_FACTOR", "SCALES", "SHORT", "Judgement", "judge", "one_sided"]

F64 = NDArray[np.float64]
#: Rounding allowance in units of sigma / h: the central difference's rounding error has standard deviation
#: ~0.7 sigma / h; 10 sigma / h is 14 standard deviations, room for the +-25 % uncertainty of the measured sigma
#: and for 1e5 coordinates without a false alarm.
ROUNDING_FACTOR = 10.0
#: Evidence that f is not smooth over [-2h, 2h]: its fourth difference (pure noise: standard deviation
#: sqrt(70) sigma = 8.4 sigma; smooth: plus h^4 f^(4)) beyond 3 standard deviations. A smooth coordinate shows it
#: 0.3 % of the time, and is then excused only if the analytic value also fits the short central difference.
KINK_EVIDENCE = 3.0 * 8.4
#: The short step of the second look, as a fraction of h: kinks farther than h/16 from the point leave the short
#: central difference smooth, whose truncation is 256 times smaller than at h (its rounding 16 times larger).
SHORT = 1.0 / 16.0
#: The positions, in units of h, the second look needs besides 0.
SCALES = (-2.0, -1.0, -SHORT, SHORT, 1.0, 2.0)


@dataclass(frozen=True)
class Judgement:
    """The second look's numeric derivative and tolerance per entry, whether it settled, and whether it is a kink."""

    numeric: F64
    tolerance: F64
    settled: NDArray[np.bool_]
    kink: NDArray[np.bool_]
    #: Unsettled, not a kink by the rules, but the analytic value fits the short central difference: several kinks
    #: within the step blur every other estimate, or a bug hides among them. Never excused on this alone: the caller
    #: looks closer (:func:`preflight.check.dense.closer_look`) and sets aside only a kink it sees, or fails it.
    near: NDArray[np.bool_]


def one_sided(f0: Any, f1: Any, f2: Any, x1: Any, x2: Any) -> tuple[F64, F64]:
    """``f'(0)`` from values at ``0, x1, x2`` (same side, ``|x1| < |x2|``), exact for quadratics, and the sum of the
    absolute weights on the values (the rounding of the estimate is ``noise x weights``).

    Its truncation error is ``-f''' x1 x2 / 6``.

    Examples
    --------
    >>> value, weights = one_sided(0.0, 0.1**2 + 0.1, 0.2**2 + 0.2, 0.1, 0.2)  # f = x^2 + x
    >>> round(float(value), 12)
    1.0
    """
    w1 = x2 / (x1 * (x2 - x1))
    w2 = -x1 / (x2 * (x2 - x1))
    value: F64 = np.asarray(w1 * (f1 - f0) + w2 * (f2 - f0), dtype=np.float64)
    weights: F64 = np.asarray(np.abs(w1) + np.abs(w2) + np.abs(w1 + w2), dtype=np.float64)
    return value, weights


def _side(f: dict[float, Any], x: dict[float, Any], sign: float, noise: Any) -> tuple[F64, F64]:
    """The side's derivative at 0 with ``f'''`` cancelled, and its rounding tolerance."""
    near, near_w = one_sided(f[0.0], f[sign * SHORT], f[sign * 1.0], x[sign * SHORT], x[sign * 1.0])
    wide, wide_w = one_sided(f[0.0], f[sign * 1.0], f[sign * 2.0], x[sign * 1.0], x[sign * 2.0])
    # Truncation -f''' p / 6 with p = x1 x2 for each window; extrapolating to p = 0 removes it.
    p_near, p_wide = x[sign * SHORT] * x[sign * 1.0], x[sign * 1.0] * x[sign * 2.0]
    c = p_near / (p_wide - p_near)
    value: F64 = np.asarray((1 + c) * near - c * wide, dtype=np.float64)
    return value, np.asarray(noise * ((1 + c) * near_w + c * wide_w), dtype=np.float64)


def judge(f: dict[float, Any], x: dict[float, Any], analytic: Any, analytic_tolerance: Any, sigma: Any) -> Judgement:
    """The second look: Richardson, and where it does not settle, the kink and tie test (module docstring).

    Parameters
    ----------
    f, x : dict
        Values and signed positions at the keys ``0.0`` and :data:`SCALES` (``x[0.0]`` is 0).
    analytic, analytic_tolerance : array
        The derivative under test and the rounding allowed for it.
    sigma : float or array
        The rounding noise (standard deviation) of one value.

    Examples
    --------
    >>> h = 1e-4
    >>> x = {k: k * h for k in (0.0, *SCALES)}
    >>> relu = {k: max(v, 0.0) for k, v in x.items()}                 # a kink at 0
    >>> j = judge(relu, x, np.array(0.0), np.array(1e-12), 1e-16)     # autograd's relu'(0) = 0
    >>> bool(j.kink), bool(j.settled)
    (True, False)
    >>> square = {k: v * v + v for k, v in x.items()}                  # smooth: f'(0) = 1
    >>> j = judge(square, x, np.array(1.001), np.array(1e-12), 1e-16)  # a bug is never a kink
    >>> bool(j.kink), bool(j.settled)
    (False, False)
    """
    g = np.asarray(analytic, dtype=np.float64)
    noise = ROUNDING_FACTOR * np.asarray(sigma, dtype=np.float64)
    h = (x[1.0] - x[-1.0]) / 2
    d1 = (f[1.0] - f[-1.0]) / (x[1.0] - x[-1.0])
    d2 = (f[2.0] - f[-2.0]) / (x[2.0] - x[-2.0])
    richardson = (4 * d1 - d2) / 3
    # Rounding of (4 D(h) - D(2h)) / 3: (4 x 1 + 1 / 2) / 3 = 1.5 noise / h.
    tolerance = np.abs(richardson - d1) + 1.5 * noise / h + analytic_tolerance
    settled = np.abs(g - richardson) <= tolerance
    left, left_tol = _side(f, x, -1.0, noise)
    right, right_tol = _side(f, x, 1.0, noise)
    left_tol, right_tol = left_tol + analytic_tolerance, right_tol + analytic_tolerance
    short = (f[SHORT] - f[-SHORT]) / (x[SHORT] - x[-SHORT])
    # Its rounding, and its truncation: SHORT^2 times the central difference's at h, which Richardson measured.
    short_tol = 2 * noise / (x[SHORT] - x[-SHORT]) + SHORT**2 * np.abs(richardson - d1) + analytic_tolerance
    split = np.abs(left - right) > left_tol + right_tol
    left_fits, right_fits = np.abs(left - short) <= left_tol + short_tol, np.abs(right - short) <= right_tol + short_tol
    # Evidence that f is not smooth over [-2h, 2h]: the two sides disagree, both disagree with the short difference,
    # or the fourth difference is beyond noise. A smooth function shows none of these (the sides have the second and
    # third derivatives cancelled; the fourth difference is noise plus h^4 f^(4)).
    fourth = f[2.0] - 4 * f[1.0] + 6 * f[0.0] - 4 * f[-1.0] + f[-2.0]
    evidence = split | (~left_fits & ~right_fits) | (np.abs(fourth) > KINK_EVIDENCE * np.asarray(sigma))
    # Then the analytic value must be what one side says (a kink on the other side), anything between the sides (a
    # kink at the point: a subgradient, as autograd's relu'(0) = 0), or the short difference (kinks on both sides
    # beyond h/16).
    band = (g >= np.minimum(left - left_tol, right - right_tol)) & (g <= np.maximum(left + left_tol, right + right_tol))
    short_fits = np.abs(g - short) <= short_tol
    # Or, with several kinks (or a float32 staircase) inside [-2h, 2h], anything the loss's own chords show: the
    # analytic value within the range of the six chord slopes around 0, each with its rounding.
    low, high = np.full_like(g, np.inf), np.full_like(g, -np.inf)
    ends = (-2.0, -1.0, -SHORT, 0.0, SHORT, 1.0, 2.0)
    for start, end in itertools.pairwise(ends):
        width = x[end] - x[start]
        slope = (f[end] - f[start]) / width
        low, high = np.minimum(low, slope - 2 * noise / width), np.maximum(high, slope + 2 * noise / width)
    among_chords = (g >= low - analytic_tolerance) & (g <= high + analytic_tolerance)
    kink = ~settled & evidence & (band | short_fits | among_chords)
    near = ~settled & ~kink & short_fits
    return Judgement(
        np.asarray(richardson, dtype=np.float64), np.asarray(tolerance, dtype=np.float64), settled, kink, near
    )
