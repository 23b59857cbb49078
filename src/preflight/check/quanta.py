"""Rows that round on a grid coarser than their measured noise: entries not resolved at the check's step.

A Jacobian row can be a small value computed from large ones: in float32 the log-probability of a dominant class
(about -5e-5) is ``z - logsumexp(z)``, a difference of O(1) numbers, so it moves on a grid of an ulp of 1 (1.2e-7),
not of an ulp of itself. The noise probe's few-ulp moves leave such a row on one float and read the rounding of the
value alone (6e-12), while the check's steps move it across the grid: a row whose entries are small (2e-5) then moves
by one or two quanta over the step, or not at all, and the first look's tolerance is a thousand times too tight.

Evidence of the grid, per entry (:func:`entry_quanta`): along the element's own steps the row shows a *level* (two
adjacent positions on exactly the same float), its changes are whole multiples of its smallest change ``q``, and
``q`` is far above the row's measured noise. A row's quantum (:func:`row_quanta`) is the smallest such ``q`` over its
entries; without a level in any of them, changes that are whole multiples of one quantum across several of its
entries show it too (:func:`shared_quanta`). A failing entry of such a row is judged again with the quantum as the
rounding of each value (:func:`rejudge`): it fails, passes, or, where even that verdict cannot tell its value from
0, is *not resolved at this step*: counted and named, never judged. An entry whose row never leaves its float, even
at a wider step, is a flat output (a mask applied in the forward only): it is resolved wherever its analytic value
predicts a move of more than half a quantum there, and then it fails.

The noise probe itself can cross a stair of a staircase times a smooth function (``round(x, 4) x^2``), whose values
move between stairs and jump at each: :func:`probe_jumps` reads the row's noise without the jumps, which ECnoise
would read as noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.check.kinks import ROUNDING_FACTOR

__all__ = [
    "JUMP_CLEAN",
    "JUMP_EXCLUDE",
    "JUMP_MOTION",
    "JUMP_PAIR",
    "JUMP_Z",
    "MULTIPLE_MATCH",
    "QUANTUM_NOISE",
    "SHARED_ENTRIES",
    "SHARED_MULTIPLES",
    "WIDE",
    "Rejudged",
    "entry_quanta",
    "probe_jumps",
    "rejudge",
    "row_quanta",
    "shared_quanta",
    "showing_quanta",
]

F64 = NDArray[np.float64]
#: The smallest change along an element counts as a quantum only this far above the row's measured noise sigma. At
#: the first look's positions, h apart, a smooth row shows a level (two adjacent positions on one float) only where
#: its change over h is within its rounding, a few sigma; its other changes over h then differ from that by its
#: curvature alone, so a level beside a change of 16 sigma takes an extremum inside the span with two values tied
#: to the last bit (odds of about sigma over the curvature's change). Should that happen, the row's allowance grows
#: from the first look's 10 sigma to the quantum, 16 sigma: the harm of a false quantum shrinks with its odds.
QUANTUM_NOISE = 16.0
#: Changes count as whole multiples of the quantum within this fraction of it: the grid's spacing drifts by ~3e-4
#: relative per quantum moved (the slope of the map from the rounded intermediate to the output varies), and the
#: noise of a change, sqrt(2) sigma, is 0.03 of a quantum at 47 sigma (the float32 MLP of tests/
#: test_torch_function_quanta.py): 3 standard deviations of it. At the smallest quanta admitted the test is stricter
#: than the noise, which only loses evidence (the first look's verdict stands).
MULTIPLE_MATCH = 0.1
#: Without a level, a row's grid shows as changes that are whole multiples of its smallest one across this many of
#: its entries (each entry's own changes over equal spacings are nearly equal, so it adds about one test): a smooth
#: row passes each test by chance with odds of 2 MULTIPLE_MATCH = 0.2, all five beyond the smallest entry's with
#: odds of 3e-4.
SHARED_ENTRIES = 6
#: Only changes up to this many quanta are tested as whole multiples (beyond, the grid's drift, ~3e-4 relative per
#: quantum, reaches MULTIPLE_MATCH), and only those count towards SHARED_ENTRIES.
SHARED_MULTIPLES = 32.0
#: The wider step, in units of h, at which an entry flat over the check's span [-2h, 2h] is looked at once more: 16h
#: moves the row 8 times farther than the span did, on either side.
WIDE = 16.0

#: A jump along the noise probe: a second difference beyond this many robust standard deviations of the row's
#: second differences from their median (the curvature; their median absolute deviation / 0.6745: 14 of them from 16
#: values keep it clean with three jumps, which corrupt two each). Rounding is bounded: a second difference of
#: roundings uniform within half an ulp stays within 2.5 of its standard deviations, and a sum of many roundings has
#: Gaussian tails; 8 leaves room for the median's own scatter over 14 values. A jump J leaves second differences J,
#: -J: it is seen from J = 8 x sqrt(6) = 20 sigma on.
JUMP_Z = 8.0
#: Once a jump is seen, second differences beyond this many robust deviations are left out of the noise too (a
#: clean one 0.3 % of the time, which lowers the rms by 1 %).
JUMP_EXCLUDE = 3.0
#: The two halves of a jump's pair of second differences agree within this fraction of the smaller (the jump is
#: the same; the smooth factor scaling it moves by far less between adjacent probe positions), beyond their noise.
#: Rounding on a coarser grid leaves adjacent excursions of unrelated sizes (a float32 linear layer's row: -21 and 15
#: of its ulps).
JUMP_PAIR = 0.1
#: A jump is a stair only beyond this many times the values' typical (median) change per step: a row rounded on a
#: grid coarser than its noise, moving one or more quanta per step (no level: :func:`entry_quanta` does not read it),
#: changes by n or n + 1 quanta per step (n >= 1), a pair of second differences +-q as a stair's, of at most its
#: typical change. tanh(round(x, 3)) x at x = 3.7 in float32 jumps by 1.7 times its change per probe step.
JUMP_MOTION = 1.25
#: The noise without the jumps needs at least this many second differences left (otherwise ECnoise's reading stands).
JUMP_CLEAN = 6


def probe_jumps(values: Any, floor: Any) -> tuple[F64, F64]:
    """Each row's rounding noise with the jumps of its values left out, and its largest jump (0 where none is seen).

    A staircase times a smooth function (``tanh(round(x, 3)) x``) moves smoothly between stairs and jumps by many
    times its rounding at each: the noise probe's ECnoise reads a jump it crosses as noise (sigma ~ J / 6), and every
    tolerance built on it is too wide to see the stairs. A jump shows as a pair of adjacent second differences J, -J
    far from the others (:data:`JUMP_Z`), and a row is read so only where every such excursion is one of a pair and
    the jump is more than the values' typical change per step (:data:`JUMP_MOTION`: not rounding on a coarser grid);
    the noise is then the rms of the others about their median (:data:`JUMP_EXCLUDE`,
    :data:`JUMP_CLEAN`) over sqrt(6) (the second difference of white noise of standard deviation sigma has sqrt(6)
    sigma). Rows with no jump seen, or whose values do not move between jumps (second differences mostly exactly
    their median: a grid, which :func:`entry_quanta` reads), are returned with NaN noise.

    Parameters
    ----------
    values : array (R, P)
        Each row's values at P >= 7 equally spaced positions.
    floor : array (R,)
        The rounding of each row's value alone (its dtype's epsilon times it): the deviations' scale is taken as
        at least this (float32 rows moving linearly often have second differences exactly equal, a deviation of 0).

    Examples
    --------
    >>> t = np.arange(16.0)
    >>> noise = 1e-8 * np.random.default_rng(0).standard_normal(16)
    >>> stairs = 1e-7 * t + 5e-7 * np.floor(t / 6) + noise               # jumps of 50 sigma after t = 5 and 11
    >>> coarse = 1.6e-6 * np.round(2.1 * t + noise)                        # 2 or 3 quanta of 1.6e-6 per step
    >>> sigma, jump = probe_jumps(np.stack([stairs, 1e-7 * t + noise, coarse]), np.full(3, 1e-10))
    >>> bool(0.5e-8 < sigma[0] < 2e-8), bool(4e-7 < jump[0] < 6e-7), np.isnan(sigma[1:]).tolist(), jump[1:].tolist()
    (True, True, [True, True], [0.0, 0.0])
    """
    f = np.asarray(values, dtype=np.float64)
    d2 = np.diff(f, n=2, axis=-1)
    r = d2 - np.median(d2, axis=-1, keepdims=True)
    lowest = np.asarray(floor, dtype=np.float64).reshape(-1, 1)
    spread = np.maximum(np.median(np.abs(r), axis=-1, keepdims=True) / 0.6745, lowest)
    big = np.abs(r) > JUMP_Z * spread
    # A jump between two values shows as a pair J, -J of adjacent second differences (their sum, f[i+3] - f[i+2]
    # - f[i+1] + f[i], is noise: 2 sigma = 0.82 of a second difference's deviation, and the halves' difference in
    # size, JUMP_PAIR); an excursion that is not one half of such a pair is rounding on a coarser
    # grid (sparse, of varied size: a float32 sum whose terms are larger than it), not a stair.
    halves = np.minimum(np.abs(r[:, :-1]), np.abs(r[:, 1:]))
    allowed = JUMP_PAIR * halves + JUMP_EXCLUDE * 0.82 * spread
    paired = big[:, :-1] & big[:, 1:] & (np.abs(r[:, :-1] + r[:, 1:]) <= allowed)
    jumps = np.zeros_like(big)
    jumps[:, :-1] |= paired
    jumps[:, 1:] |= paired
    # A jump between the last two values (or the first two) leaves only one half of its pair.
    jumps[:, [0, -1]] |= big[:, [0, -1]]
    jump_size = np.max(np.where(jumps, np.abs(r), 0.0), axis=-1)
    motion = np.abs(np.median(np.diff(f, axis=-1), axis=-1))
    seen = jumps.any(axis=-1) & ~np.any(big & ~jumps, axis=-1) & (jump_size > JUMP_MOTION * motion)
    clean = (np.abs(r) <= JUMP_EXCLUDE * spread) & ~jumps
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(np.sum(np.where(clean, r * r, 0.0), axis=-1) / np.sum(clean, axis=-1))
    enough = np.sum(clean, axis=-1) >= JUMP_CLEAN
    sigma: F64 = np.where(seen & enough & np.isfinite(rms), np.maximum(rms, spread[:, 0]) / np.sqrt(6.0), np.nan)
    jump: F64 = np.where(seen, jump_size, 0.0)
    return sigma, jump


def entry_quanta(values: Any, sigma: Any, spread: float = 1.0) -> F64:
    """The quantum each entry's values show, 0 where they show none (module docstring).

    Parameters
    ----------
    values : array (..., P)
        Each entry's values at its P positions, in increasing order of position (the point itself among them).
    sigma : array broadcasting to values[..., 0]
        The measured rounding noise (standard deviation) of each entry's row.
    spread : float
        The largest ratio of two spacings between adjacent positions (1 for positions h apart; 16 with the second
        look's +-h/16 among +-h): a level over the short spacing bounds a smooth row's change over the long one by
        ``spread`` times more, so the quantum must be :data:`QUANTUM_NOISE` x ``spread`` x sigma.

    Examples
    --------
    >>> grid = 1.2e-7 * np.array([[-2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0]])   # a staircase with a level
    >>> smooth = 1e-5 * np.array([[-2.0, -1.0, -0.0625, 0.0, 0.0625, 1.0, 2.0]])
    >>> entry_quanta(np.vstack([grid, smooth]), 1e-11).tolist()
    [1.2e-07, 0.0]
    """
    f = np.asarray(values, dtype=np.float64)
    noise = np.broadcast_to(np.asarray(sigma, dtype=np.float64), f.shape[:-1])
    d = np.abs(np.diff(f, axis=-1))
    known = np.isfinite(d)
    level = np.any(known & (d == 0), axis=-1)
    moving = known & (d > 0)
    q = np.min(np.where(moving, d, np.inf), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = d / q[..., None]
    whole = np.all(~moving | (np.abs(ratio - np.round(ratio)) <= MULTIPLE_MATCH), axis=-1)
    evidence = level & np.isfinite(q) & (q >= QUANTUM_NOISE * spread * noise) & whole
    out: F64 = np.where(evidence, q, 0.0)
    return out


def row_quanta(*quanta: Any) -> F64:
    """Per row, the smallest nonzero quantum over the entries of every block ``(R, n_k)`` given; 0 where none."""
    rows = [np.min(np.where(np.asarray(q) > 0, q, np.inf), axis=1) for q in quanta if np.asarray(q).shape[1]]
    if not rows:
        return np.zeros(np.asarray(quanta[0]).shape[0] if quanta else 0)
    smallest = np.min(np.stack(rows), axis=0)
    out: F64 = np.where(np.isfinite(smallest), smallest, 0.0)
    return out


def showing_quanta(quantum: Any, entries: Any) -> NDArray[np.bool_]:
    """Which entries ``(R, n)`` of a block (their quanta from :func:`entry_quanta`) show their row's ``quantum``
    ``(R,)``, within :data:`MULTIPLE_MATCH` of it.

    Examples
    --------
    >>> q = 1.2e-7
    >>> showing_quanta(np.array([q, 0.0]), np.array([[q, 0.0, 1.05 * q], [q, 0.0, 0.0]])).tolist()
    [[True, False, True], [False, False, False]]
    """
    row = np.asarray(quantum, dtype=np.float64)[:, None]
    q = np.asarray(entries, dtype=np.float64)
    out: NDArray[np.bool_] = (row > 0) & (q > 0) & (np.abs(q - row) <= MULTIPLE_MATCH * row)
    return out


def shared_quanta(values: Any, sigma: Any) -> F64:
    """Per row, the grid its entries share, 0 where none: the smallest nonzero change of its values between adjacent
    positions (all h apart), when it is at least :data:`QUANTUM_NOISE` sigma and every change up to
    :data:`SHARED_MULTIPLES` of it, in at least :data:`SHARED_ENTRIES` entries, is a whole multiple of it.

    Parameters
    ----------
    values : array (R, n, P)
        Each entry's values at P positions h apart, in increasing order of position.
    sigma : array (R, 1)
        Each row's measured rounding noise.

    Examples
    --------
    >>> q = 1.2e-7
    >>> slopes = np.array([3.0, 5.0, 8.0, 1.0, 7.0, 2.0])[:, None] * np.arange(-2.0, 3.0)
    >>> grid, smooth = q * slopes, q * slopes * np.array([1.0, 1.13, 0.91, 1.0, 1.27, 1.44])[:, None]
    >>> shared_quanta(np.stack([grid, smooth]), np.full((2, 1), 1e-11)).tolist()
    [1.2e-07, 0.0]
    """
    f = np.asarray(values, dtype=np.float64)
    if f.shape[1] == 0 or f.shape[2] < 2:
        return np.zeros(f.shape[0])
    d = np.abs(np.diff(f, axis=-1))
    moving = np.isfinite(d) & (d > 0)
    q = np.min(np.where(moving, d, np.inf), axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = d / q[:, None, None]
    tested = moving & (ratio <= SHARED_MULTIPLES)
    whole = np.all(~tested | (np.abs(ratio - np.round(ratio)) <= MULTIPLE_MATCH), axis=(1, 2))
    entries = np.sum(tested.any(axis=2), axis=1)
    noise = np.asarray(sigma, dtype=np.float64).reshape(-1)
    evidence = np.isfinite(q) & (q >= QUANTUM_NOISE * noise) & whole & (entries >= SHARED_ENTRIES)
    out: F64 = np.where(evidence, q, 0.0)
    return out


@dataclass(frozen=True)
class Rejudged:
    """The verdict on failing entries of quantized rows, judged with the row's quantum."""

    numeric: F64
    tolerance: F64
    bad: NDArray[np.bool_]
    unresolved: NDArray[np.bool_]


def rejudge(
    f: dict[float, Any], x: dict[float, Any], analytic: Any, analytic_tolerance: Any, sigma: Any,
    quantum: Any, silent: Any = False,
) -> Rejudged:  # fmt: skip
    """Judge entries of rows with a quantum (> 0) from their values ``f[s]`` at positions ``x[s]``, ``s`` in
    (-2, -1, 1, 2) units of h.

    Each value is taken to be off its smooth value by up to one quantum (one rounding onto the grid moves it by at
    most half of one; the other half allows for a second rounding), or by the first look's rounding allowance where
    that is more; the tolerance is then the first look's: ``|Richardson - D(h)| + 1.5 noise / h`` plus the analytic
    side's rounding. An entry within it whose tolerance is at least its own size (and the estimate's) is not
    resolved: the differences cannot tell its value from 0. ``silent`` marks the entries whose row stays on one float
    over the span and at ``+-WIDE h`` too: the row does not move at all there, and such an entry fails where its
    analytic value predicts a move of more than half a quantum at ``WIDE h`` (a linear function on a grid of q
    crosses a boundary of its cell, on one side or the other, once it moves by more than q / 2).

    Examples
    --------
    >>> h, q = 5e-3, 1.2e-7
    >>> x = {s: s * h for s in (-2.0, -1.0, 1.0, 2.0)}
    >>> f = {s: q * np.round(-2e-5 * x[s] / q) for s in x}              # slope -2e-5 on a grid of q
    >>> r = rejudge(f, x, np.array([-2e-5, 2e-3]), 1e-12, 1e-12, q)
    >>> r.bad.tolist(), r.unresolved.tolist()
    ([False, True], [True, False])
    """
    a = np.asarray(analytic, dtype=np.float64)
    noise = np.maximum(ROUNDING_FACTOR * np.asarray(sigma, dtype=np.float64), np.asarray(quantum, dtype=np.float64))
    h = (x[1.0] - x[-1.0]) / 2
    d1 = (f[1.0] - f[-1.0]) / (x[1.0] - x[-1.0])
    d2 = (f[2.0] - f[-2.0]) / (x[2.0] - x[-2.0])
    numeric = (4 * d1 - d2) / 3
    tolerance = np.abs(numeric - d1) + 1.5 * noise / h + analytic_tolerance
    bad = np.abs(a - numeric) > tolerance
    unresolved = ~bad & (tolerance >= np.maximum(np.abs(a), np.abs(numeric)))
    resolvable = np.asarray(silent, dtype=bool) & (np.abs(a) * h * WIDE > np.asarray(quantum) / 2)
    bad, unresolved = bad | resolvable, unresolved & ~resolvable
    return Rejudged(np.asarray(numeric, dtype=np.float64), np.asarray(tolerance, dtype=np.float64), bad, unresolved)
