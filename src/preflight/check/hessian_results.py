"""What a second-order check gathers: per group of columns (a set of directions, or a tensor's Hessian columns)
its entries' verdicts for the report, the evidence the hints read, the Hessian's symmetry, and the blocks that fail.

Used by :mod:`preflight.check.second_order`; nothing here evaluates anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from preflight.check.diagnosis import TensorEvidence
from preflight.check.inputs import Leaves
from preflight.check.jacobian import EntryVerdict
from preflight.check.report import Coordinate, TensorResult
from preflight.check.verdict import WORST, excess_ratio

__all__ = ["Evidence", "Group", "RowNames", "Symmetry", "block_hints"]

F64 = NDArray[np.float64]


class RowNames:
    """Gradient element (a row) -> which tensor and its index there."""

    def __init__(self, leaves: Leaves) -> None:
        self.names = list(leaves)
        self.shapes = [tuple(a.shape) for a in leaves.values()]
        self.offsets = np.cumsum([0] + [a.size for a in leaves.values()])

    def __call__(self, row: int) -> tuple[str, tuple[int, ...]]:
        i = int(np.searchsorted(self.offsets, row, side="right")) - 1
        index = np.unravel_index(row - int(self.offsets[i]), self.shapes[i]) if self.shapes[i] else ()
        return self.names[i], tuple(int(k) for k in index)


class Evidence:
    """Per gradient tensor, every judged column combined with random weights: the hints' view of ``(H v)[W]``."""

    def __init__(self, leaves: Leaves, rng: np.random.Generator) -> None:
        self.leaves, self.rng = leaves, rng
        size = sum(a.size for a in leaves.values())
        self.analytic, self.numeric, self.tolerance = np.zeros(size), np.zeros(size), np.zeros(size)
        self.bad = np.zeros(size, dtype=bool)

    def add(self, analytic: F64, verdict: EntryVerdict, scale: F64) -> None:
        """Columns (rows x k) with their verdict; ``scale`` per column makes directions and unit columns comparable."""
        w = self.rng.standard_normal(analytic.shape[1]) * scale
        keep = ~verdict.kink
        self.analytic += np.where(keep, analytic, 0.0) @ w
        self.numeric += np.where(keep, verdict.numeric, 0.0) @ w
        self.tolerance += np.where(keep, verdict.tolerance, 0.0) @ np.abs(w)
        self.bad |= verdict.bad.any(axis=1)

    def evidence(self) -> list[TensorEvidence]:
        out, start = [], 0
        for name, arr in self.leaves.items():
            part = slice(start, start + arr.size)
            start += arr.size
            theta = arr.reshape(-1).astype(np.float64)
            a, n, tolerance = self.analytic[part], self.numeric[part], self.tolerance[part]
            # Failing as the hints see it: the combination itself beyond its tolerance (a failing entry can drown).
            failed = bool(self.bad[part].any() and np.any(np.abs(a - n) > tolerance))
            out.append(TensorEvidence(f"(H v)[{name}]", tuple(arr.shape), np.arange(arr.size), a, n, theta, tolerance,
                                      failed))  # fmt: skip
        return out


@dataclass
class Group:
    """One row of the report's second-order section (a set of directions, or a tensor's columns), built block by
    block: the entries it judged, the norms for its difference, its worst entries and its kinks."""

    name: str
    shape: tuple[int, ...]
    rows: RowNames
    #: The tensor the group's directions or columns move (None: directions over every tensor).
    moved: str | None
    attempted: int = 0
    judged: int = 0
    failed: int = 0
    squares: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # |a - n|^2, |a|^2, |n|^2
    worst: list[tuple[float, Coordinate]] = field(default_factory=list)
    kinks: list[Coordinate] = field(default_factory=list)
    #: Gradient elements (rows) with a failing entry in this group.
    failing_rows: set[int] = field(default_factory=set)

    def add(self, analytic: F64, verdict: EntryVerdict, columns: list[tuple[int, ...]]) -> None:
        keep = ~verdict.kink
        self.failing_rows.update(np.flatnonzero(verdict.bad.any(axis=1)).tolist())
        a, n = analytic[keep], verdict.numeric[keep]
        self.attempted += analytic.size
        self.judged += int(keep.sum())
        self.failed += int(verdict.bad.sum())
        self.squares = [s + float(np.sum(x * x)) for s, x in zip(self.squares, (a - n, a, n), strict=True)]
        excess = np.where(keep, excess_ratio(analytic, verdict.numeric, verdict.tolerance), -1.0)
        top = np.argsort(-excess, axis=None, kind="stable")[:WORST]
        for flat in top.tolist():
            r, c = np.unravel_index(flat, analytic.shape)
            if excess[r, c] >= 0:
                self.worst.append((float(excess[r, c]), self.entry(analytic, verdict, int(r), int(c), columns)))
        self.worst = sorted(self.worst, key=lambda pair: -pair[0])[:WORST]
        for r, c in np.argwhere(verdict.kink).tolist():
            self.kinks.append(self.entry(analytic, verdict, r, c, columns))

    def entry(self, a: F64, verdict: EntryVerdict, r: int, c: int, columns: list[tuple[int, ...]]) -> Coordinate:
        tensor, index = self.rows(r)
        return Coordinate(columns[c], float(a[r, c]), float(verdict.numeric[r, c]), float(verdict.tolerance[r, c]),
                          index, f"grad {tensor}")  # fmt: skip

    def result(self) -> TensorResult:
        wrong, a, n = (math.sqrt(s) for s in self.squares)
        return TensorResult(
            name=self.name, shape=self.shape, size=self.attempted, checked=self.judged,
            difference=0.0 if a + n == 0 else wrong / (a + n), passed=self.failed == 0, failed=self.failed,
            significance=max((e for e, _ in self.worst), default=0.0), worst=[c for _, c in self.worst],
            kinks=self.kinks, inconclusive=self.attempted > 0 and self.judged == 0,
        )  # fmt: skip


class Symmetry:
    """The whole Hessian that ``hvp`` gives (every column checked): a true Hessian is symmetric, so an asymmetric one
    proves a bug and names the pair of blocks, whatever the differences say."""

    def __init__(self, size: int) -> None:
        self.analytic, self.tolerance = np.zeros((size, size)), np.zeros((size, size))

    def add(self, columns: NDArray[np.intp], analytic: F64, verdict: EntryVerdict) -> None:
        self.analytic[:, columns] = analytic
        self.tolerance[:, columns] = np.where(verdict.kink, np.inf, verdict.tolerance)

    def hints(self, rows: RowNames) -> list[str]:
        # Each side errs by at most its tolerance against the same true (symmetric) Hessian.
        apart = np.abs(self.analytic - self.analytic.T) > self.tolerance + self.tolerance.T
        pairs: dict[tuple[str, str], int] = {}
        for i, j in np.argwhere(np.triu(apart, 1)).tolist():
            key = (rows(i)[0], rows(j)[0])
            pairs[key] = pairs.get(key, 0) + 1
        if not pairs:
            return []
        listed = ", ".join(f"H[{a}, {b}] vs H[{b}, {a}]^T ({n})" for (a, b), n in list(pairs.items())[:6])
        return [
            f"the Hessian that hvp gives is not symmetric (a Hessian is): {int(apart.sum()) // 2} pairs of entries "
            f"differ beyond their tolerance, in {listed}: one block of each pair is wrong"
        ]


def block_hints(groups: list[Group], rows: RowNames) -> list[str]:
    """Where the failing entries lie, as Hessian blocks H[gradient's tensor, moved tensor]."""
    found: dict[str, list[str]] = {}
    for g in groups:
        if g.moved is None or not g.failing_rows:
            continue
        tensors = list(dict.fromkeys(rows(r)[0] for r in sorted(g.failing_rows)))
        found.setdefault(g.moved, [])
        found[g.moved] += [t for t in tensors if t not in found[g.moved]]
    if not found:
        return []
    blocks = ", ".join(f"H[{row}, {moved}]" for moved, tensors in found.items() for row in tensors)
    return [
        f"the failing entries lie in the Hessian blocks {blocks} (H[gradient's tensor, moved tensor]); the others match"
    ]
