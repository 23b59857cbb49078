"""Kinks located: the loss along a suspect coordinate fitted as a cubic, a kink at the point, and hinges elsewhere.

Along one coordinate a ReLU network's loss is smooth between kinks (a unit crossing zero for one example), and a
float32 step holds several. The closer look (:mod:`preflight.check.dense`) reads the slope at 0 from windows that
stop before the kinks; a kink too weak to stop them, or one closer to the point than the grid resolves, still bends
the slope they read by half its jump. This model locates the kinks instead. Over ``[-2h, 2h]`` (:data:`REACH`):

    f(u) = a + b u + q u^2 + s u^3 + c |u| + sum_j d_j max(u - p_j, 0)

- ``c |u|`` is always in: a kink at (or within the grid's finest spacing of) the point, whatever its size. The two
  sides' slopes at 0 are ``b - c`` and ``b + c``, and an analytic value between them is what autograd returns at a
  kink (a subgradient, or the side the point belongs to). Keeping the term costs precision (the sides' standard
  error is 0.8 sigma / h against 0.3 for a plain cubic, on :data:`~preflight.check.dense.GRID`), never an excuse:
  a smooth line has ``c`` = 0 within its error, and the tolerance is that error.
- hinges ``d_j`` at other positions ``p_j`` are added one at a time, each time the one that explains the most of
  what is left, while it stands out of the noise by :data:`HINGE_Z` (:data:`MAX_HINGES` at most). Each shifts the
  slope at 0 by ``d_j`` when it lies left of the point.

The slope at 0 is then ``b + sum_{p_j < 0} d_j``, between its two sides ``-c`` and ``+c``, a hinge placed within
:data:`NEAR` of the point taken both ways (its side of the point is not resolved); the caller's tolerance is
:data:`~preflight.check.dense.SLOPE_Z` standard errors of the fit. A kink is *seen* when ``c`` or a hinge stands out
of the noise. ``hidden`` is the largest jump seen near the point: the scale of a second kink crowding it closer than
the grid resolves, which the caller (:func:`preflight.check.dense.closer_look`) allows for where a kink is seen
there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["HINGE_Z", "MAX_HINGES", "NOISE_MARGIN", "NOISE_Z", "REACH", "Hinges", "hinge_fit", "noise_bound"]

F64 = NDArray[np.float64]
#: The fit spans ``[-REACH h, REACH h]``: the whole closer look.
REACH = 2.0
#: A hinge (or the kink at the point) stands out when its coefficient is this many standard errors from 0, the
#: noise taken at the upper end of its measured range (x 1.25): the largest of ~100 correlated candidate positions
#: reaches 5 standard deviations by chance about 1e-4 of the time (Bonferroni over ~30 independent ones), and a kink
#: seen by chance only widens what is excused to what the fit can still tell apart.
HINGE_Z = 5.0
#: Within this distance of the point (in units of h) a hinge's side is uncertain (its position is fitted to a few
#: grid steps, h/64 apart there): the range the point's slope may take counts its jump both ways.
NEAR = 0.125
#: Hinges placed at most; a coordinate with more kinks than this in its step leaves residuals beyond noise and is
#: left to the windows of :mod:`preflight.check.dense`.
MAX_HINGES = 4
#: A hinge candidate needs this many values strictly on each side (else it is a cubic's business).
SIDE_POINTS = 4
#: A window's residual sum of squares is rounding noise when it stays under the chi-square quantile at this many
#: standard deviations (Wilson-Hilferty): a smooth window is wrongly refused 3e-5 of the time (it then only loses
#: precision: a narrower window decides), a kink whose values stray 4 sigma from every cubic is seen.
NOISE_Z = 4.0
#: The measured sigma is known to +-25 % (:mod:`preflight.check.inputs`); the tests read residuals against the
#: upper end of that range, so an underestimated sigma does not invent kinks.
NOISE_MARGIN = 1.25
#: Base terms: 1, u, u^2, u^3, |u|.
BASE = 5
#: Suspects fitted together: the candidate columns take rows x 61 x ~110 doubles (27 MB at 512 rows).
CHUNK = 512


@dataclass(frozen=True)
class Hinges:
    """Per suspect: the slopes at 0 on the point's two sides (equal unless a kink sits at the point), the larger of
    their standard errors (the noise taken at its upper end), whether a kink was seen (at the point or as a hinge),
    and whether the model explains the values (residuals within noise, as :func:`noise_bound` reads them)."""

    low: F64
    high: F64
    se: F64
    seen: NDArray[np.bool_]
    fits: NDArray[np.bool_]
    #: The largest jump of slope among the kinks the fit sees near the point (at it, ``2c``, and the hinges within
    #: :data:`NEAR`): the scale of a second kink crowding the point closer than the grid resolves, which moves the
    #: point's slope beyond ``low`` .. ``high``. The kinks along one coordinate are one ReLU unit crossing for
    #: different examples, of one scale of jump.
    hidden: F64
    #: A kink seen at the point or a hinge placed within :data:`NEAR` of it.
    near: NDArray[np.bool_]


def noise_bound(dof: int | NDArray[Any]) -> F64:
    """The chi-square quantile at :data:`NOISE_Z` standard deviations for ``dof`` degrees of freedom, over ``dof``.

    Wilson-Hilferty's cube-root normal approximation (good to a few percent from 1 degree of freedom on).

    Examples
    --------
    >>> round(float(noise_bound(30)), 2)
    2.39
    """
    d = np.maximum(np.asarray(dof, dtype=np.float64), 1.0)
    out: F64 = (1 - 2 / (9 * d) + NOISE_Z * np.sqrt(2 / (9 * d))) ** 3
    return out


def hinge_fit(values: dict[float, Any], positions: dict[float, Any], h: Any, sigma: Any) -> Hinges:
    """The model of the module docstring, fitted per suspect.

    Parameters
    ----------
    values, positions : dict
        Loss values and signed moves by position in units of h (``0.0`` and every key of
        :data:`~preflight.check.dense.GRID`; arrays, one entry per suspect).
    h : array
        The nominal step of each suspect.
    sigma : float or array
        The rounding noise (standard deviation) of one loss value.

    Examples
    --------
    >>> from preflight.check.dense import GRID
    >>> h = np.array([1e-2, 1e-2])
    >>> x = {k: k * h for k in (0.0, *GRID)}
    >>> noise = np.random.default_rng(0).normal(0, 1e-8, (len(x), 2))
    >>> f = {k: np.array([abs(v[0] - 3e-3), v[1] + v[1] ** 2]) + e for (k, v), e in zip(x.items(), noise)}
    >>> fit = hinge_fit(f, x, h, 1e-8)  # |x - 0.3 h| (a kink right of the point: slope -1 at 0); x + x^2 (smooth)
    >>> fit.seen.tolist(), fit.fits.tolist()
    ([True, False], [True, True])
    >>> np.round(fit.low, 4).tolist(), np.round(fit.high, 4).tolist()
    ([-1.0, 1.0], [-1.0, 1.0])
    """
    h = np.asarray(h, dtype=np.float64)
    rows = h.size
    noise = NOISE_MARGIN * np.broadcast_to(np.asarray(sigma, dtype=np.float64), (rows,))
    keys = sorted(k for k in values if abs(k) <= REACH)
    u = np.stack([np.broadcast_to(positions[k] / (REACH * h), (rows,)) for k in keys], axis=1)
    f = np.stack([np.broadcast_to(values[k] - values[0.0], (rows,)) for k in keys], axis=1)
    nominal = np.array(keys) / REACH
    cells = np.concatenate([nominal, (nominal[1:] + nominal[:-1]) / 2])
    inner = np.array([min((nominal < c).sum(), (nominal > c).sum()) >= SIDE_POINTS for c in cells])
    # Kinks within the grid's finest spacing of the point are the |u| term's.
    finest = float(np.min(np.abs(nominal[nominal != 0])))
    candidates = np.sort(cells[inner & (np.abs(cells) > finest)])
    parts = [
        _fit_rows(u[s : s + CHUNK], f[s : s + CHUNK], noise[s : s + CHUNK], candidates) for s in range(0, rows, CHUNK)
    ]
    slopes = np.concatenate([p[0] for p in parts], axis=0) if parts else np.zeros((0, 7))
    flags = np.concatenate([p[1] for p in parts], axis=0) if parts else np.zeros((0, 3), dtype=bool)
    scale = REACH * h
    left, right = slopes[:, 0] / scale, slopes[:, 1] / scale
    low = np.minimum(left, right) + slopes[:, 4] / scale
    high = np.maximum(left, right) + slopes[:, 5] / scale
    se = np.maximum(slopes[:, 2], slopes[:, 3]) / scale
    return Hinges(low, high, se, flags[:, 0], flags[:, 1], slopes[:, 6] / scale, flags[:, 2])


def _fit_rows(u: F64, f: F64, noise: F64, candidates: F64) -> tuple[F64, NDArray[np.bool_]]:
    """:func:`hinge_fit` on a block of rows, in units of u: (left, right, left se, right se, the ambiguous hinges'
    negative and positive sums, hidden) and (seen, fits, near) per row."""
    rows, n = u.shape
    Z = np.maximum(u[:, :, None] - candidates[None, None, :], 0.0)  # rows x n x candidates
    base = np.stack([np.ones_like(u), u, u**2, u**3, np.abs(u)], axis=-1)
    where, coef, inverse, rss = _select(base, Z, candidates, f, noise)
    dof = n - BASE - np.sum(~np.isnan(where), axis=1)
    fits = rss <= noise**2 * dof * noise_bound(dof)
    # Slope at 0 on each side: b -+ c, plus every hinge left of the point. A hinge placed within NEAR of the point
    # may be on either side of it (its position is known to a few grid steps): the range takes it both ways.
    placed = np.nan_to_num(where, nan=np.inf)
    ambiguous = np.abs(placed) <= NEAR / REACH
    jumps = np.where(ambiguous, coef[:, BASE:], 0.0)
    out = np.zeros((rows, 6))
    for k, sign in enumerate((-1.0, 1.0)):
        w = np.zeros((rows, BASE + MAX_HINGES))
        w[:, 1], w[:, 4] = 1.0, sign
        w[:, BASE:] = (placed < 0) & ~ambiguous
        out[:, k] = np.einsum("rp,rp->r", w, coef)
        out[:, 2 + k] = noise * np.sqrt(np.abs(np.einsum("rp,rpq,rq->r", w, inverse, w)))
    out[:, 4] = np.sum(np.minimum(jumps, 0.0), axis=1)
    out[:, 5] = np.sum(np.maximum(jumps, 0.0), axis=1)
    at_point = np.abs(coef[:, 4]) > HINGE_Z * noise * np.sqrt(np.abs(inverse[:, 4, 4]))
    seen = at_point | np.isfinite(placed[:, 0])
    # The jumps of the kinks near the point: the one at it (2c) and the hinges within NEAR (a hinge farther out may
    # stand for several kinks merged: its jump is no one kink's).
    hidden = np.maximum(2 * np.abs(coef[:, 4]), np.max(np.abs(jumps), axis=1))
    near = at_point | np.any(ambiguous, axis=1)
    return np.concatenate([out, hidden[:, None]], axis=1), np.stack([seen, fits, near], axis=1)


def _select(base: F64, Z: F64, candidates: F64, f: F64, noise: F64) -> tuple[F64, F64, F64, F64]:
    """Hinges added one at a time, each the candidate column that explains most of what is left, while it stands
    out by :data:`HINGE_Z`: the hinges' positions (nan: none), the coefficients, the inverse normal matrix and the
    residual sum of squares of the final fit (columns not placed stay zero: the pseudo-inverse gives them 0)."""
    rows, n, _ = base.shape
    X = np.zeros((rows, n, BASE + MAX_HINGES))
    X[:, :, :BASE] = base
    where: F64 = np.full((rows, MAX_HINGES), np.nan)
    active = np.ones(rows, dtype=bool)
    for j in range(MAX_HINGES):
        Xt = X.transpose(0, 2, 1)
        inverse = np.linalg.pinv(Xt @ X)
        residual = f - (X @ (inverse @ (Xt @ f[:, :, None])))[:, :, 0]
        projected = Z - X @ (inverse @ (Xt @ Z))
        size = np.sum(projected**2, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.abs((residual[:, None, :] @ projected)[:, 0, :]) / (noise[:, None] * np.sqrt(size))
        # A candidate already placed projects to rounding (~1e-16 n); a new one to at least its last point's
        # share (u moves 1/128 per grid step: (1/128)^2 = 6e-5).
        t = np.where(size > 1e-12 * n, np.nan_to_num(t, nan=0.0, posinf=0.0), 0.0)
        best = np.argmax(t, axis=1)
        add = active & (t[np.arange(rows), best] > HINGE_Z)
        X[add, :, BASE + j] = Z[add, :, best[add]]
        where[add, j] = candidates[best[add]]
        active &= add
        if not active.any():
            break
    Xt = X.transpose(0, 2, 1)
    inverse = np.linalg.pinv(Xt @ X)
    coef: F64 = (inverse @ (Xt @ f[:, :, None]))[:, :, 0]
    residual = f - (X @ coef[:, :, None])[:, :, 0]
    rss: F64 = np.sum(residual**2, axis=1)
    return where, coef, np.asarray(inverse, dtype=np.float64), rss
