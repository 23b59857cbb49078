"""Steps of ``check_function`` per input element: inside the function's domain, and small enough to settle.

An input's :class:`Block` holds the outputs at the moved positions of its usable elements, for the engine's verdict
(:func:`preflight.check.jacobian.judge_entries`). Three things decide which step an element gets, or whether it gets
one at all (its entries are then *skipped*: not judged, not kinks, named in a note):

- an element that is not finite (``-inf`` in a masked softmax) gets no step;
- one whose outputs are not finite at the step (asin, atanh, erfinv, logit near +-1, log near 0) gets its step
  halved until they are (:data:`MAX_HALVINGS`), then :data:`EDGE_MARGIN` times more;
- one whose entries fail is looked at again with smaller steps (:mod:`preflight.check.function_judge`); an element
  whose estimates never settle is named as not checkable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.check.jacobian import Columns
from preflight.check.report import label as element_label

__all__ = [
    "EDGE_MARGIN",
    "MAX_HALVINGS",
    "MIN_STEP_ULPS",
    "Block",
    "Verdict",
    "build_block",
    "name_unresolved",
    "named",
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
    #: Columns whose estimate settled on the mean slope of stairs finer than its span: skipped.
    staircase: set[int] = field(default_factory=set)
    #: (kind, column) pairs a note already names.
    reported: set[tuple[str, int]] = field(default_factory=set)
    #: Each row's stairs where its noise probe crossed some ``(R, 1)``, 0 elsewhere (None: none known), for the
    #: smoothness test of the smaller steps (:mod:`preflight.check.function_judge`).
    stairs: F64 | None = None
    #: The coarser of the input's and the outputs' machine epsilon (a float64 input whose function returns float32
    #: moves the rows only by float32 ulps): the scale of the moves that read the noise along one element.
    coarse_epsilon: float = 0.0

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


def build_block(
    label: str, shape: tuple[int, ...], point: A, h: F64, move: Move, scales: tuple[float, ...],
    rows_at_point: tuple[F64, F64, float], notes: list[str], stairs: F64 | None = None, coarse_epsilon: float = 0.0,
) -> Block:  # fmt: skip
    """Evaluate every finite element of ``point`` at ``scales x h``, each element's step halved while its outputs
    are not finite. ``rows_at_point`` is ``(f0, sigma, epsilon)`` for :class:`~preflight.check.jacobian.Columns`;
    ``stairs`` the rows' stairs the noise probe crossed (:attr:`Block.stairs`); notes name the elements not moved."""
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
    block = Block(label, shape, columns, usable, h, move, notes, finite=finite, stairs=stairs,
                  coarse_epsilon=max(epsilon, coarse_epsilon))  # fmt: skip
    return block


def name_unresolved(block: Block, unresolved: NDArray[np.bool_]) -> None:
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
