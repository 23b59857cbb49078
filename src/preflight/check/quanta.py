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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.check.kinks import ROUNDING_FACTOR

__all__ = [
    "MULTIPLE_MATCH",
    "QUANTUM_NOISE",
    "SHARED_ENTRIES",
    "SHARED_MULTIPLES",
    "WIDE",
    "Rejudged",
    "entry_quanta",
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
