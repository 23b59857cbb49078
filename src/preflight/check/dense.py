"""The closer look at a suspect coordinate: the loss along its own axis, sampled densely, read by least squares.

The second look (:mod:`preflight.check.kinks`) decides from seven values. Where it cannot tell a kink from a bug
(the coordinate neither settles nor shows a kink, only the short difference agrees: several kinks inside the step,
or a wrong element hiding among them), this look samples the loss along the coordinate itself at the 60 positions of
:data:`GRID` (down to h/64 around the point) and decides from what it sees, allowing for curvature over the step:

1. Across the point: windows ``[-L, L]`` (:data:`WINDOWS`) fitted with a cubic, from the narrowest out. A window is
   kept while its residuals are rounding noise (chi-square at :data:`NOISE_Z`) and its slope at 0 agrees with every
   narrower window's (:data:`AGREE_Z`, Lepski's rule). A kink bends the slope of the windows that hold it, so the
   widening stops before the kinks; where it stops short of ``2h`` a kink is *seen* within the step.
2. Each side alone: windows ``[0, L]`` and ``[-L, 0]`` with a quadratic, the same way: the one-sided slopes at 0.
   A kink at the point itself (which bends every window across it alike) is seen as sides that disagree.
3. The analytic value is excused (a kink) only with a kink seen: between the sides of a kink at the point (a
   subgradient, or the side the point belongs to), or within the step and what the windows across the point say.
   Otherwise it is judged on the widest window kept: a smooth line whose slope disagrees is a bug, however close the
   first difference came.

The tolerances come from the measured noise ``sigma`` of one loss value: :data:`SLOPE_Z` standard errors of the
window kept, plus the drift of its slope over the last :data:`DRIFT_WINDOWS` halvings (the bend a kink too weak for
the agreement test could still hide).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.check.hinges import NOISE_MARGIN, NOISE_Z, hinge_fit, noise_bound

__all__ = ["GRID", "NOISE_Z", "SLOPE_Z", "WINDOWS", "Closer", "closer_look", "noise_bound"]

F64 = NDArray[np.float64]
#: Positions along the coordinate, in units of h, besides 0: every h/64 out to h/8 (two kinks h/8 apart around the
#: point, as a ReLU unit crossing on either side, leave 15 values between them), every h/16 out to h, every h/8
#: out to 2h (the wide windows need the reach, not the density): 60 positions, 56 new after the first two looks.
GRID: tuple[float, ...] = tuple(
    sorted(
        {k / 64 for k in range(-8, 9) if k}
        | {k / 16 for k in range(-16, 17) if abs(k) > 2}
        | {k / 8 for k in range(-16, 17) if abs(k) > 8}
    )
)
#: Half-widths of the windows, in units of h, widest first.
WINDOWS = (2.0, 1.0, 0.5, 0.25, 0.125, 0.0625)
#: Slope estimates are trusted to this many standard errors: the Gaussian tail over 1e5 suspects (5 deviations:
#: 6e-7 each), the drift term carrying what kinks may add.
SLOPE_Z = 5.0
#: Two nested windows' slopes agree within this many standard deviations of their difference (``sqrt(se_narrow^2 -
#: se_wide^2)`` for nested least squares). 3, not more: a kink one window holds and the narrower one does not moves
#: the slope by little more than that (measured on the float32 ReLU MLPs at batch 256: correct coordinates whose
#: kinks sit 0.1 h from the point drift 4 deviations from h/2 to h), and a smooth coordinate that stops widening
#: early (2.7e-3 per comparison) only loses precision, it is never excused for it unless the slope kept agrees.
AGREE_Z = 3.0
#: A kink inside the window kept can move its slope by less than the agreement test resolves, step by step: the
#: tolerance adds the drift of the slope over the last this many halvings of the window (as far as it is within
#: the agreement), the bend a kink could hide. Two halvings: a window four times narrower holds a fourth of the
#: kinks, and its own error is still within a few times the kept one's.
DRIFT_WINDOWS = 2
#: Where a kink is seen near the point, a second one may crowd it closer than the grid resolves (two kinks h/20
#: apart leave the point a piece of three grid steps, whose own slope no fit reads): its jump moves the point's
#: slope beyond what the fit sees, taken up to this many times the largest jump the fit sees near the point
#: (:attr:`~preflight.check.hinges.Hinges.hidden`). The kinks along one coordinate are one unit's crossings for
#: different examples, of one scale; the one correct coordinate found crowded in 16 float32 ReLU nets at batch 256
#: (tests/test_kinks_float32.py's, seed 12) needed 1.15 times it.
CROWD = 2.0
#: A window's normal equations with a larger condition number are singular (see ``_fit``).
SINGULAR = 1e10


@dataclass(frozen=True)
class Closer:
    """Per suspect: the slope that decides and its tolerance, whether a kink was seen and excuses the analytic value
    (``kink``), and whether every window across 0 out to 2h is smooth (``smooth``: no kink seen there)."""

    numeric: F64
    tolerance: F64
    kink: NDArray[np.bool_]
    smooth: NDArray[np.bool_]
    #: The located kinks explain the values, and the analytic value is off every slope the point's piece could have
    #: (either side of a kink at the point, a hinge near it taken both ways, and where a kink is seen near the
    #: point, one more jump of the size seen, for a kink crowding it beyond the grid's resolution): a bug, whatever
    #: kinks the step holds.
    off: NDArray[np.bool_]


def _fit(u: F64, f: F64, degree: int, sigma: F64) -> tuple[F64, F64, NDArray[np.bool_]]:
    """Least-squares polynomial fits, one per row (``u``, ``f``: rows x points, ``u`` within [-1, 1]): the slope at 0
    (per unit of u), its standard error, and whether the residuals are noise (and the design regular)."""
    X = np.stack([u**p for p in range(degree + 1)], axis=-1)  # rows x n x p
    A = np.einsum("rnp,rnq->rpq", X, X)
    rhs = np.einsum("rnp,rn->rp", X, f)
    # Moves that collapse onto each other (a step the dtype cannot resolve) make the system singular: the
    # pseudo-inverse keeps the fit from raising, and such a window says nothing (infinite error, not smooth). With u
    # scaled to the window the regular designs have condition numbers under 1e3; 1e10 leaves 6 digits of float64.
    singular = ~(np.linalg.cond(A) < SINGULAR)
    inverse = np.linalg.pinv(A)
    coef = np.einsum("rpq,rq->rp", inverse, rhs)
    residual = f - np.einsum("rnp,rp->rn", X, coef)
    dof = u.shape[1] - (degree + 1)
    se: F64 = np.where(singular, np.inf, sigma * np.sqrt(np.abs(inverse[:, 1, 1])))
    rss = np.sum(residual**2, axis=1)
    fits = (rss <= (NOISE_MARGIN * sigma) ** 2 * dof * noise_bound(dof)) if dof > 0 else np.ones(u.shape[0], bool)
    return coef[:, 1], se, fits & ~singular


def _window(
    values: dict[float, F64], positions: dict[float, F64], h: F64, sigma: F64, side: int, half: float
) -> tuple[F64, F64, NDArray[np.bool_]]:
    """One window's slope at 0, its standard error, and whether its residuals are noise (``side``: 0 the window
    ``[-half h, half h]`` with a cubic, +1 or -1 one side of it with a quadratic)."""
    rows = h.size
    keys = [k for k in values if (abs(k) <= half if side == 0 else 0 <= side * k <= half)]
    u = np.stack([np.broadcast_to(positions[k] / h, (rows,)) for k in keys], axis=1)
    f = np.stack([np.broadcast_to(values[k] - values[0.0], (rows,)) for k in keys], axis=1)
    b, s, fits = _fit(u / half, f, 3 if side == 0 else 2, sigma)
    return b / (half * h), s / (half * h), fits


def _scales(
    values: dict[float, F64], positions: dict[float, F64], h: F64, sigma: F64, side: int
) -> tuple[F64, F64, F64]:
    """The slope at 0 from the widest window (``side``: 0 both sides with a cubic, +1 or -1 one side with a quadratic)
    that is smooth as far as the data show, its tolerance (inf where none is), and that window's half-width in units
    of h (0 where none is).

    Windows are taken from the narrowest out (Lepski's rule): a window is smooth when its residuals are noise and its
    slope agrees with every narrower window's within :data:`AGREE_Z` standard deviations of their difference (for
    nested least-squares fits, ``sqrt(se_narrow^2 - se_wide^2)``). A kink bends the slope of the windows that hold it
    even where a cubic absorbs it into the residuals, so the first disagreement ends the widening, and is itself
    evidence of a kink within the wider window. The tolerance is :data:`SLOPE_Z` standard errors of the window
    kept, plus the bend a kink could still hide from the agreement test (:data:`DRIFT_WINDOWS`)."""
    rows = h.size
    slope, tolerance, reach = np.zeros(rows), np.full(rows, np.inf), np.zeros(rows)
    alive = np.ones(rows, dtype=bool)
    seen: list[tuple[F64, F64]] = []
    for half in reversed(WINDOWS):
        b, s, fits = _window(values, positions, h, sigma, side, half)
        agree, drift = fits.copy(), np.zeros(rows)
        for back, (earlier, earlier_se) in enumerate(reversed(seen)):
            spread = AGREE_Z * np.sqrt(np.maximum(earlier_se**2 - s**2, 0.0))
            agree &= np.abs(b - earlier) <= spread
            if back < DRIFT_WINDOWS:
                drift = np.maximum(drift, np.minimum(np.abs(b - earlier), spread))
        alive &= agree
        slope = np.where(alive, b, slope)
        tolerance = np.where(alive, SLOPE_Z * s + drift, tolerance)
        reach = np.where(alive, half, reach)
        seen.append((b, s))
    return slope, tolerance, reach


def closer_look(
    values: dict[float, Any], positions: dict[float, Any], h: Any, analytic: Any, analytic_tolerance: Any, sigma: Any
) -> Closer:
    """Kink or bug, from the loss sampled along each suspect's coordinate (module docstring).

    Parameters
    ----------
    values, positions : dict
        Loss values and signed moves at ``0.0`` and every key of :data:`GRID` (arrays, one entry per suspect).
    h : array
        The nominal step of each suspect.
    analytic, analytic_tolerance : array
        The derivative under test and the rounding allowed for it.
    sigma : float or array
        The rounding noise (standard deviation) of one loss value.

    Examples
    --------
    >>> h = np.array([1e-2, 1e-2])
    >>> x = {k: k * h for k in (0.0, *GRID)}
    >>> noise = np.random.default_rng(0).normal(0, 1e-7, (len(x), 2))
    >>> f = {k: np.array([abs(v[0]), v[1] + v[1] ** 2]) + e for (k, v), e in zip(x.items(), noise)}
    >>> look = closer_look(f, x, h, np.array([0.0, 1.01]), np.zeros(2), 1e-7)  # |x| at its kink; x + x^2 with a bug
    >>> look.kink.tolist(), look.smooth.tolist()  # the kink is seen; the bug is a smooth line
    ([True, False], [False, True])
    >>> bool(abs(1.01 - look.numeric[1]) > look.tolerance[1])
    True
    """
    h = np.asarray(h, dtype=np.float64)
    g = np.asarray(analytic, dtype=np.float64)
    a_tol = np.broadcast_to(np.asarray(analytic_tolerance, dtype=np.float64), g.shape)
    noise = np.broadcast_to(np.asarray(sigma, dtype=np.float64), g.shape)
    both, both_tol, reach = _scales(values, positions, h, noise, 0)
    smooth = reach == WINDOWS[0]
    left, left_tol, _ = _scales(values, positions, h, noise, -1)
    right, right_tol, _ = _scales(values, positions, h, noise, 1)
    both_tol, left_tol, right_tol = both_tol + a_tol, left_tol + a_tol, right_tol + a_tol
    # A kink at the point: the one-sided slopes disagree beyond both their errors.
    split = np.abs(left - right) > left_tol + right_tol
    between = (g >= np.minimum(left - left_tol, right - right_tol)) & (
        g <= np.maximum(left + left_tol, right + right_tol)
    )
    # Otherwise the function is smooth at 0 as far as the data show: the windows across 0 decide (a one-sided
    # quadratic absorbs a kink into its curvature with little residual, a window across 0 shows it as a change of
    # slope), or where no window across 0 is smooth, the more precise side.
    side_better = right_tol < left_tol
    numeric = np.where(np.isfinite(both_tol), both, np.where(side_better, right, left))
    tolerance = np.where(np.isfinite(both_tol), both_tol, np.where(side_better, right_tol, left_tol))
    fits = np.abs(g - numeric) <= tolerance
    # Excused, with evidence: a kink seen (at the point: the sides disagree; within the step: the windows across
    # the point stop widening short of 2h), and the analytic value what the windows across the point say, or between
    # the two sides (a subgradient at a kink, or the side the point belongs to when a kink sits closer than the
    # grid resolves: it bends every window across the point alike).
    kink = (split | ~smooth) & (fits | between & np.isfinite(left_tol) & np.isfinite(right_tol))
    # What the windows would fail, the located kinks may explain (preflight.check.hinges): a kink at the point, or
    # one too weak to stop the widening, bends the windows' slope by up to half its jump. The point's slope is then
    # either side of a kink at the point, a hinge near it taken both ways, and, where a kink is seen near the point,
    # moved by a second one crowding it (CROWD).
    model = hinge_fit(values, positions, h, noise)
    model_tol = SLOPE_Z * model.se + a_tol
    reach = model_tol + np.where(model.near, CROWD * model.hidden, 0.0)
    plausible = model.fits & (g >= model.low - reach) & (g <= model.high + reach)
    # Where the windows fail, a plausible value is judged on the model: set aside as a kink where one is seen,
    # passed on the model's tolerance otherwise.
    rescued = ~(fits | kink) & plausible
    numeric = np.where(rescued, np.clip(g, model.low, model.high), numeric)
    tolerance = np.where(rescued, np.maximum(reach, np.abs(g - np.clip(g, model.low, model.high))), tolerance)
    kink |= rescued & model.seen
    # Off, to overrule an excuse: beyond one more tolerance still. Kinks near the point too weak for the fit to place
    # bend the sides it reads (measured on correct float32 ReLU coordinates with kinks of ~10 sigma / h within h/5
    # of the point: up to 5 sigma / h beyond the model's tolerance, about one tolerance).
    off = model.fits & ((g < model.low - reach - model_tol) | (g > model.high + reach + model_tol))
    return Closer(numeric, np.where(np.isfinite(tolerance), tolerance, np.inf), kink, smooth, off)
