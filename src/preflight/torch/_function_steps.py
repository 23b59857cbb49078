"""Steps of ``check_function`` per input element: inside the function's domain, and small enough to settle.

An input's :class:`Block` holds the outputs at the moved positions of its usable elements, for the engine's verdict
(:func:`preflight.check.jacobian.judge_entries`). Three things decide which step an element gets, or whether it gets
one at all (its entries are then *skipped*: not judged, not kinks, named in a note):

- an element that is not finite (``-inf`` in a masked softmax) gets no step;
- one whose outputs are not finite at the step (asin, atanh, erfinv, logit near +-1, log near 0) gets its step
  halved until they are (:data:`MAX_HALVINGS`), then :data:`EDGE_MARGIN` times more;
- one whose entries fail is looked at again with half the step: where the estimates at h and h/2 agree, the failure
  stands (a smooth function's derivative settled at h: a real bug); where they do not, the step straddled a pole or
  a jump (tan near pi/2), and the step keeps halving until two successive estimates agree, whose verdict then holds.
  An element whose estimates never settle is named as not checkable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.check import quanta as grid
from preflight.check.jacobian import Columns, judge_entries
from preflight.check.kinks import KINK_EVIDENCE, ROUNDING_FACTOR, SHORT
from preflight.check.report import label as element_label
from preflight.check.verdict import ANALYTIC_FACTOR

__all__ = [
    "EDGE_MARGIN",
    "MAX_HALVINGS",
    "MIN_STEP_ULPS",
    "Block",
    "Verdict",
    "build_block",
    "first_look",
    "judge_block",
]

A = NDArray[Any]
F64 = NDArray[np.float64]
Index = NDArray[np.intp]
#: Evaluates the rows at ``scale x h`` for the given elements: ``(values (R, k), signed moves (k,), finite (k,))``.
Move = Callable[[F64, float, Index], tuple[F64, F64, NDArray[np.bool_]]]
#: The smallest step the domain's edge may bring an element's step down to, in ulps of the element (its dtype's eps
#: times max(1, |x|)): a difference over k ulps resolves the derivative to about |f| / (k |x|) (3 % of the
#: function's scale at 32), informative only where the derivative is large, as it is near an edge. An element whose
#: outputs are still not finite is named as not checkable.
MIN_STEP_ULPS = 32
#: Halvings of a failing element's step whose estimates have not settled (a pole within the step): 10 take float32's
#: default step 4.9e-3 max(1, |x|) down to 4.8e-6 max(1, |x|), 40 ulps.
MAX_HALVINGS = 10
#: Further halvings once such an element's outputs are finite at +-2h: the function's higher derivatives grow like
#: powers of 1 / d near an edge at distance d, and Richardson's truncation like (h / d)^4; the first finite step may
#: have h up to d / 2, two more halvings bring it to d / 8 or less (truncation ~1e-3 of the derivative and below).
EDGE_MARGIN = 2
#: Elements named per note (the count says how many there are).
NAMED = 5


@dataclass(frozen=True)
class Verdict:
    """Per Jacobian entry ``(R, n)``: numeric derivative, tolerance, failing, kink, skipped (not judged), tried (its
    element was given a step: finite), and not resolved at the step (:mod:`preflight.check.quanta`; skipped too)."""

    numeric: F64
    tolerance: F64
    bad: NDArray[np.bool_]
    kink: NDArray[np.bool_]
    skip: NDArray[np.bool_]
    tried: NDArray[np.bool_]
    unresolved: NDArray[np.bool_] | None = None

    @classmethod
    def empty(cls) -> Verdict:
        """The verdict on a block with no entry."""
        nothing = np.zeros((0, 0), dtype=bool)
        return cls(np.zeros((0, 0)), np.zeros((0, 0)), nothing, nothing, nothing, nothing, nothing)

    @property
    def judged(self) -> NDArray[np.bool_]:
        """Entries that were judged (neither set aside as kinks nor skipped)."""
        out: NDArray[np.bool_] = self.tried & ~self.kink & ~self.skip
        return out

    @property
    def not_resolved(self) -> NDArray[np.bool_]:
        """Entries not resolved at the check's step (all False where none)."""
        return np.zeros_like(self.skip) if self.unresolved is None else self.unresolved


def named(label: str, shape: tuple[int, ...], flats: Sequence[int] | Index, values: A | None = None) -> str:
    """``x[0, 1], x[2, 0], ...`` (:data:`NAMED` at most), with their values when given."""
    first = [int(f) for f in flats[:NAMED]]
    shown = [element_label(label, shape, f) for f in first]
    if values is not None:
        shown = [f"{s} = {float(values[f])}" for s, f in zip(shown, first, strict=True)]
    return ", ".join(shown) + (", ..." if len(flats) > NAMED else "")


@dataclass
class Block:
    """One input's moved evaluations: ``columns`` over the ``usable`` elements (indices into the flat input), at
    the steps ``h``; ``levels[k]`` the same at ``h / 2^k``, filled on demand."""

    label: str
    shape: tuple[int, ...]
    columns: Columns
    usable: Index
    h: F64
    move: Move
    notes: list[str]
    #: Elements that are finite (the others get no step: their entries are not attempted).
    finite: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    levels: dict[int, Columns] = field(default_factory=dict)
    #: Columns (positions in ``usable``) whose outputs were not finite at a later position, and those that never
    #: settled: skipped.
    late: set[int] = field(default_factory=set)
    unsettled: set[int] = field(default_factory=set)
    #: (kind, column) pairs a note already names.
    reported: set[tuple[str, int]] = field(default_factory=set)

    def unreported(self, kind: str, columns: set[int] | dict[int, int]) -> list[int]:
        """The columns of ``kind`` no note names yet, now marked as named."""
        fresh = sorted(c for c in columns if (kind, c) not in self.reported)
        self.reported.update((kind, c) for c in fresh)
        return fresh

    def _moved(self, h: F64, scale: float, cols: Index) -> tuple[F64, F64]:
        got, steps, finite = self.move(h, scale, self.usable[cols])
        self.late.update(cols[~finite].tolist())
        return got, steps

    def level(self, k: int) -> Columns:
        """The columns at ``h / 2^k`` (k = 0: :attr:`columns`); ``+-2`` of level k is ``+-1`` of level k - 1."""
        if k == 0:
            return self.columns
        if k not in self.levels:
            previous, h = self.level(k - 1), self.h / 2**k

            def evaluate(scale: float, cols: Index) -> tuple[F64, F64]:
                if abs(scale) == 2.0:
                    previous.fill(scale / 2, cols)
                    return previous.values[scale / 2][:, cols], previous.positions[scale / 2][cols]
                return self._moved(h, scale, cols)

            self.levels[k] = Columns(self.columns.f0, self.columns.sigma, self.columns.epsilon, self.usable.size,
                                     evaluate)  # fmt: skip
        return self.levels[k]


def _restricted(level: Columns, cols: Index) -> Columns:
    """``level``'s columns ``cols`` as a block of their own (sharing its evaluations), +-h and +-2h filled."""

    def evaluate(scale: float, sub: Index) -> tuple[F64, F64]:
        level.fill(scale, cols[sub])
        return level.values[scale][:, cols[sub]], level.positions[scale][cols[sub]]

    out = Columns(level.f0, level.sigma, level.epsilon, cols.size, evaluate)
    for scale in (1.0, -1.0, 2.0, -2.0):
        out.fill(scale, np.arange(cols.size))
    return out


def build_block(
    label: str, shape: tuple[int, ...], point: A, h: F64, move: Move, scales: tuple[float, ...],
    rows_at_point: tuple[F64, F64, float], notes: list[str],
) -> Block:  # fmt: skip
    """Evaluate every finite element of ``point`` at ``scales x h``, each element's step halved while its outputs
    are not finite. ``rows_at_point`` is ``(f0, sigma, epsilon)`` for :class:`~preflight.check.jacobian.Columns`;
    notes name the elements not moved."""
    f0, sigma, epsilon = rows_at_point
    n, rows = point.size, f0.shape[0]
    finite = np.isfinite(point)
    h = np.where(finite, h, 0.0)
    values = {s: np.full((rows, n), np.nan) for s in scales}
    moves = {s: np.full(n, np.nan) for s in scales}
    halvings = np.zeros(n, dtype=int)

    def evaluate(elements: Index) -> NDArray[np.bool_]:
        inside = np.ones(elements.size, dtype=bool)
        for s in scales:
            values[s][:, elements], moves[s][elements], ok = move(h, s, elements)
            inside &= ok
        return inside

    floor = MIN_STEP_ULPS * epsilon * np.maximum(1.0, np.abs(np.where(finite, point, 0.0)))
    pending, outside = np.flatnonzero(finite), np.zeros(0, dtype=np.intp)
    while pending.size:
        leaving = pending[~evaluate(pending)]
        room = h[leaving] / 2 >= floor[leaving]
        outside = np.union1d(outside, leaving[~room])
        pending = leaving[room]
        h[pending] /= 2
        halvings[pending] += 1
    near_edge = np.setdiff1d(np.flatnonzero(halvings), outside)
    if near_edge.size:
        smaller = np.maximum(h[near_edge] / 2**EDGE_MARGIN, floor[near_edge])
        halvings[near_edge] += np.round(np.log2(h[near_edge] / smaller)).astype(int)
        h[near_edge] = smaller
        outside = np.union1d(outside, near_edge[~evaluate(near_edge)])
    usable = np.setdiff1d(np.flatnonzero(finite), outside)
    if not finite.all():
        where = named(label, shape, np.flatnonzero(~finite), point)
        notes.append(
            f"{label}: {int((~finite).sum())} element(s) not finite ({where}): no step taken, their Jacobian entries "
            "are not checked"
        )
    shrunk = np.intersect1d(np.flatnonzero(halvings), usable)
    if shrunk.size:
        notes.append(
            f"{label}: step shrunk (by up to {2 ** int(halvings[shrunk].max())}x) for {shrunk.size} element(s) whose "
            f"outputs were not finite at the full step (the edge of the function's domain): "
            f"{named(label, shape, shrunk)}"
        )
    if outside.size:
        notes.append(
            f"{label}: {outside.size} element(s) not checkable: outputs not finite even at a step of {MIN_STEP_ULPS} "
            f"ulps (at the edge of the function's domain): {named(label, shape, outside)}"
        )
    block: Block

    def later(scale: float, cols: Index) -> tuple[F64, F64]:
        return block._moved(h, scale, cols)

    columns = Columns(f0, sigma, epsilon, usable.size, later,
                      values={s: values[s][:, usable] for s in scales},
                      positions={s: moves[s][usable] for s in scales})  # fmt: skip
    block = Block(label, shape, columns, usable, h, move, notes, finite=finite)
    return block


#: A second short position of the smoothness test, as a fraction of h: irrational, so that a staircase's stairs
#: do not fall on it at the ratio they fall on +-h/16, +-h and +-2h (a staircase can look exactly linear there).
MIDDLE = 0.5**0.5


def _smooth(level: Columns, cols: Index) -> NDArray[np.bool_]:
    """Per entry of ``cols``, whether its values show no step or kink in the level's span: the fourth difference
    at +-h, +-2h within the kink test's allowance for noise (:data:`preflight.check.kinks.KINK_EVIDENCE`), and the
    central differences over +-h/16 and +-h/sqrt(2) within the kink test's allowance around Richardson's value (their
    rounding, t^2 times the truncation Richardson measured at h, and Richardson's own rounding). A staircase sampled
    symmetrically has a fourth difference of 0, but slopes of its own over other widths."""
    for scale in (-2.0, -1.0, -SHORT, SHORT, -MIDDLE, MIDDLE, 1.0, 2.0):
        level.fill(scale, cols)
    f = {s: level.values[s][:, cols] for s in (-2.0, -1.0, 1.0, 2.0)}
    x = {s: level.positions[s][cols][None, :] for s in f}
    fourth = f[2.0] - 4 * f[1.0] + 6 * level.f0 - 4 * f[-1.0] + f[-2.0]
    out: NDArray[np.bool_] = np.abs(fourth) <= KINK_EVIDENCE * level.sigma
    with np.errstate(all="ignore"):
        noise = ROUNDING_FACTOR * level.sigma
        d1 = (f[1.0] - f[-1.0]) / (x[1.0] - x[-1.0])
        richardson = (4 * d1 - (f[2.0] - f[-2.0]) / (x[2.0] - x[-2.0])) / 3
        own = 1.5 * noise / ((x[1.0] - x[-1.0]) / 2)
        for t in (SHORT, MIDDLE):
            width = (level.positions[t] - level.positions[-t])[cols][None, :]
            slope = (level.values[t][:, cols] - level.values[-t][:, cols]) / width
            allowance = 2 * noise / width + t**2 * np.abs(richardson - d1) + own
            out &= np.abs(slope - richardson) <= allowance
    return out


def _settle(block: Block, a: F64, failing: Index, verdict: list[A]) -> None:
    """The second look with smaller steps at the ``failing`` columns (positions in ``usable``): ``verdict``
    (numeric, tolerance, bad, kink over the usable columns) is updated where the step had straddled a pole or jump."""
    numeric, tolerance, bad, kink = verdict
    was_bad: NDArray[np.bool_] = bad[:, failing]
    previous = numeric[:, failing], tolerance[:, failing]
    pending = np.arange(failing.size)
    smaller: dict[int, int] = {}
    for k in range(1, MAX_HALVINGS + 1):
        cols = failing[pending]
        with np.errstate(all="ignore"):
            e = judge_entries(_restricted(block.level(k), cols), a[:, cols])
        agree = np.abs(e.numeric - previous[0][:, pending]) <= e.tolerance + previous[1][:, pending]
        # Where the backward says flat (exactly 0), the estimate whose verdict would stand (at h for k = 1, else at
        # h / 2^k) must also come from values that are smooth over its span: on a staircase finer than the step
        # (round(x, 3) in float32), the estimates at h and h/2 agree on the stairs' mean slope while the function's
        # derivative is 0. Elsewhere a staircase is the rounding of a smooth function (a saturated tanh's 1 - t^2 in
        # float32), whose mean slope is its derivative: agreement settles it, as before.
        agree &= _smooth(block.level(k - 1 if k == 1 else k), cols) | (a[:, cols] != 0)
        settled = np.all(agree | ~was_bad[:, pending], axis=0)
        if k > 1:  # at k = 1, settled means the estimate at h had settled: its verdict stands
            done = cols[settled]
            numeric[:, done], tolerance[:, done] = e.numeric[:, settled], e.tolerance[:, settled]
            bad[:, done], kink[:, done] = e.bad[:, settled], e.kink[:, settled]
            smaller.update(dict.fromkeys(done.tolist(), k))
        previous[0][:, pending], previous[1][:, pending] = e.numeric, e.tolerance
        pending = pending[~settled]
        if not pending.size:
            break
    block.unsettled.update(failing[pending].tolist())
    fresh = block.unreported("smaller", smaller)
    if fresh:
        block.notes.append(
            f"{block.label}: {len(fresh)} element(s) judged with a smaller step (down to 1/{2 ** max(smaller.values())}"
            " of it): their estimates at the full step did not settle (a pole or a jump within the step): "
            f"{named(block.label, block.shape, block.usable[fresh])}"
        )


def first_look(block: Block) -> F64:
    """Every usable entry's values at the first look's positions (h apart) and the point, ``(R, usable, P)``, for
    :mod:`preflight.check.quanta`."""
    columns = block.columns
    scales = [s for s in (-2.0, -1.0, 1.0, 2.0) if s in columns.values]
    return _stack(columns, scales, np.arange(block.usable.size))


def _stack(columns: Columns, scales: Sequence[float], cols: Index) -> F64:
    """The values of ``cols`` at ``scales`` and at the point, in increasing order of position: ``(R, k, P)``."""
    point = np.repeat(columns.f0, cols.size, axis=1)
    by_scale = [columns.values[s][:, cols] for s in sorted(scales)]
    below = sum(s < 0 for s in scales)
    return np.stack([*by_scale[:below], point, *by_scale[below:]], axis=-1)


def _local_quanta(columns: Columns) -> F64:
    """Per row, the quantum the columns the second look filled show with its +-h/16 (``(R,)``, 0 where none)."""
    short = SHORT
    if short not in columns.positions:
        return np.zeros(columns.f0.shape[0])
    cols = np.flatnonzero(np.isfinite(columns.positions[short]) & np.isfinite(columns.positions[-short]))
    if not cols.size:
        return np.zeros(columns.f0.shape[0])
    values = _stack(columns, (-2.0, -1.0, -short, short, 1.0, 2.0), cols)
    return grid.row_quanta(grid.entry_quanta(values, columns.sigma, spread=1 / short))


def _quantized(block: Block, a: F64, verdict: list[A], pooled: F64) -> NDArray[np.bool_]:
    """Failing entries of rows that round coarser than their measured noise judged again with the row's grid
    (:func:`preflight.check.quanta.rejudge`); ``verdict`` updated, the entries not resolved returned. ``pooled``:
    each row's grid from every input's first look; the second look's +-h/16 here may show more."""
    numeric, tolerance, bad, _ = verdict
    columns = block.columns
    local = _local_quanta(columns)
    quantum = np.where((local > 0) & ((pooled == 0) | (local < pooled)), local, pooled)
    unresolved = np.zeros_like(bad)
    cols = np.flatnonzero(bad.any(axis=0))
    if not cols.size:
        return unresolved
    for scale in (-2.0, -1.0, 1.0, 2.0):
        columns.fill(scale, cols)
    f = {s: columns.values[s][:, cols] for s in (-2.0, -1.0, 1.0, 2.0)}
    x = {s: columns.positions[s][cols][None, :] for s in f}
    flat = bad[:, cols] & np.all([f[s] == columns.f0 for s in f], axis=0)
    own = np.zeros_like(f[1.0])
    silent = np.zeros_like(flat)
    wide = np.flatnonzero(flat.any(axis=0))
    if wide.size:
        # The row's values at +-WIDE h along the element's own step; one not finite shows nothing.
        seen = [block.move(block.h, s * grid.WIDE, block.usable[cols[wide]])[0] for s in (-1.0, 1.0)]
        moves = np.stack([np.abs(np.where(np.isfinite(v), v, columns.f0) - columns.f0) for v in seen])
        silent[:, wide] = flat[:, wide] & np.all(moves == 0, axis=0)
        own[:, wide] = np.min(np.where(moves > 0, moves, np.inf), axis=0)
    h = np.abs(x[1.0] - x[-1.0]) / 2
    rows = np.sqrt(np.mean(np.where(np.isfinite(a), a, 0.0) ** 2, axis=1, keepdims=True))
    analytic_tolerance = ANALYTIC_FACTOR * columns.epsilon * (np.abs(a[:, cols]) + rows)
    r = grid.rejudge(f, x, a[:, cols], analytic_tolerance, columns.sigma, quantum[:, None], silent)
    gridded = bad[:, cols] & (quantum[:, None] > 0)
    # A flat entry of a row with no grid of its own: the smallest move its row made at +-WIDE h is the grid's
    # evidence where it is far above the noise; the span's flatness is explained if the analytic value predicts
    # less than that move over the whole span (4h).
    coarse = flat & ~gridded & np.isfinite(own) & (own >= grid.QUANTUM_NOISE * columns.sigma)
    explained = coarse & (np.abs(a[:, cols]) * 4 * h <= own)
    use = gridded | explained
    numeric[:, cols] = np.where(use, np.where(gridded, r.numeric, 0.0), numeric[:, cols])
    tolerance[:, cols] = np.where(gridded, r.tolerance, np.where(explained, own / (4 * h), tolerance[:, cols]))
    bad[:, cols] = np.where(gridded, r.bad, bad[:, cols] & ~explained)
    unresolved[:, cols] = (gridded & r.unresolved) | explained
    return unresolved


def judge_block(block: Block, analytic: A, quantum: F64 | None = None) -> tuple[F64, Verdict]:
    """The verdict on one input's block ``analytic (R, n)``; entries of elements not moved are skipped (and zeroed
    in the returned analytic block). ``quantum``: each row's grid (:func:`preflight.check.quanta.row_quanta`), for
    the failing entries of rows that round coarser than their measured noise."""
    a = np.array(analytic, dtype=np.float64)
    numeric, tolerance = np.zeros_like(a), np.zeros_like(a)
    bad, kink = np.zeros(a.shape, dtype=bool), np.zeros(a.shape, dtype=bool)
    skip = np.ones(a.shape, dtype=bool)
    unresolved = np.zeros(a.shape, dtype=bool)
    tried = np.zeros(a.shape, dtype=bool)
    tried[:, block.finite] = True
    cols = block.usable
    if cols.size:
        usable = a[:, cols]
        with np.errstate(all="ignore"):  # a later position outside the domain: skipped below
            entries = judge_entries(block.columns, usable)
            verdict = [entries.numeric, entries.tolerance, entries.bad.copy(), entries.kink.copy()]
            if quantum is not None:
                unresolved[:, cols] = _quantized(block, usable, verdict, quantum)
        failing = np.flatnonzero(verdict[2].any(axis=0))
        if failing.size:
            _settle(block, usable, failing, verdict)
        numeric[:, cols], tolerance[:, cols], bad[:, cols], kink[:, cols] = verdict
        skip[:, cols] = False
        unresolved[:, cols] &= ~bad[:, cols]
        skip |= unresolved
        _name_unresolved(block, unresolved)
    for reason, positions in (
        ("outputs not finite at a later position of the check (the edge of the function's domain)", block.late),
        ("the derivative estimates do not settle as the step shrinks (a pole or a jump within the step)",
         block.unsettled),
    ):  # fmt: skip
        if positions:
            where = cols[sorted(positions)]
            skip[:, where], bad[:, where], kink[:, where] = True, False, False
            fresh = block.unreported(reason, positions)
            if fresh:
                block.notes.append(
                    f"{block.label}: {len(fresh)} element(s) not checkable: {reason}: "
                    f"{named(block.label, block.shape, cols[fresh])}"
                )
    unresolved &= skip
    a[skip], numeric[skip] = 0.0, 0.0
    return a, Verdict(numeric, tolerance, bad, kink, skip, tried, unresolved)


def _name_unresolved(block: Block, unresolved: NDArray[np.bool_]) -> None:
    """The note naming the entries not resolved at the step (once per block)."""
    if not unresolved.any() or ("unresolved", -1) in block.reported:
        return
    block.reported.add(("unresolved", -1))
    elements = np.flatnonzero(unresolved.any(axis=0))
    block.notes.append(
        f"{block.label}: {int(unresolved.sum())} Jacobian entries not resolved at the step, not judged: their output "
        "rows move on a grid coarser than their measured noise (an ulp of a larger intermediate, or a staircase), "
        "and the entries' change over the step is below a few of its quanta; in elements "
        f"{named(block.label, block.shape, elements)}"
    )
