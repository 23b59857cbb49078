"""The verdict on a block of Jacobian entries: each output element (or projection) is a loss of its own.

A function's check (``preflight.torch.check_function``, any adapter) moves one input element at a time and records
``R`` output rows at each move; a :class:`Columns` holds those values for the ``n`` elements of one input. The
verdict is the engine's, entry by entry: the noise of each row measured (not assumed), a first tolerance from it
and the step, and the same second look (:func:`preflight.check.kinks.judge`) for every entry outside it; where the
caller can move its columns to any position (``closer=True``), the closer look
(:func:`preflight.check.dense.closer_look`) for every entry the second look leaves undecided, as the first-order
engine does for a coordinate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.check.dense import GRID, closer_look
from preflight.check.kinks import ROUNDING_FACTOR, SCALES, judge
from preflight.check.verdict import ANALYTIC_FACTOR

__all__ = ["Columns", "EntryVerdict", "Locator", "judge_entries"]

F64 = NDArray[np.float64]
#: Evaluates the rows at ``scale x h`` for the given element indices: ``(values (R, k), signed steps (k,))``.
Evaluate = Callable[[float, NDArray[np.intp]], tuple[F64, F64]]
#: A flat entry of a Jacobian block ``(R, n)`` -> (the input element's index, the output element's or None).
Locator = Callable[[int], tuple[tuple[int, ...], tuple[int, ...] | None]]


@dataclass
class Columns:
    """Output rows ``(R, n)`` at moves of ``scale x h`` of each of an input's ``n`` elements, filled on demand.

    ``f0`` is the rows at the unmoved input ``(R, 1)``, ``sigma`` their measured rounding noise ``(R, 1)``,
    ``epsilon`` the machine epsilon of the input (for the analytic side's rounding), ``size`` the input's ``n``.
    """

    f0: F64
    sigma: F64
    epsilon: float
    size: int
    evaluate: Evaluate
    values: dict[float, F64] = field(default_factory=dict)
    positions: dict[float, F64] = field(default_factory=dict)

    def fill(self, scale: float, columns: NDArray[np.intp]) -> None:
        """Make sure ``values[scale]`` holds the given columns (evaluating only the missing ones)."""
        if scale not in self.values:
            self.values[scale] = np.full((self.f0.shape[0], self.size), np.nan)
            self.positions[scale] = np.full(self.size, np.nan)
        missing = columns[np.isnan(self.positions[scale][columns])]
        if missing.size:
            values, steps = self.evaluate(scale, missing)
            self.values[scale][:, missing] = values
            self.positions[scale][missing] = steps


@dataclass(frozen=True)
class EntryVerdict:
    """Per entry ``(R, n)``: the numeric derivative, its tolerance, failing, and set aside as a kink."""

    numeric: F64
    tolerance: F64
    bad: NDArray[np.bool_]
    kink: NDArray[np.bool_]


def judge_entries(columns: Columns, analytic: Any, *, closer: bool = False) -> EntryVerdict:
    """The verdict on every entry of one input's Jacobian block ``analytic (R, n)``.

    The first look is the central difference at h (Richardson with 2h where ``columns`` has it); entries outside
    its tolerance get the second look, the missing positions evaluated for their columns only. An entry the second
    look neither settles nor sees a kink in, but whose short difference agrees with it
    (:attr:`~preflight.check.kinks.Judgement.near`: several kinks within the step, or a bug among them), fails,
    unless ``closer``: then its column is evaluated at every position of :data:`preflight.check.dense.GRID` (56
    evaluations more, once per column whatever its number of such entries) and the closer look decides: set aside
    only where it sees a kink, judged on the slope its least-squares windows keep otherwise (they allow for
    curvature over the step, so a smooth row is never set aside).
    """
    a = np.asarray(analytic, dtype=np.float64)
    n = a.shape[1]
    everything = np.arange(n)
    for scale in (1.0, -1.0):
        columns.fill(scale, everything)
    f, x = columns.values, columns.positions
    noise = ROUNDING_FACTOR * columns.sigma
    h = (x[1.0] - x[-1.0]) / 2
    d1 = (f[1.0] - f[-1.0]) / (x[1.0] - x[-1.0])
    finite_a = np.where(np.isfinite(a), a, 0.0)  # a NaN entry must not take its whole row's tolerance with it
    rows = np.sqrt(np.mean(finite_a * finite_a, axis=1, keepdims=True)) if n else np.zeros((a.shape[0], 1))
    # The analytic Jacobian's own rounding: a product over the function's inner dimension errs by a few sqrt(k)
    # ulps relative to its terms, as for a gradient (ANALYTIC_FACTOR), the row's scale. A row the function holds
    # exactly constant at every step (the imaginary part of a real eigenvalue, exactly 0) still carries the rounding
    # of the backward's products, relative to the terms the rows share: it takes the typical row's scale (the median
    # row; a block-wide rms would let one huge row, an element next to a pole, loosen every other).
    constant = np.all(d1 == 0, axis=1, keepdims=True)
    rms = np.where(constant, np.median(rows) if rows.size else 0.0, rows)
    analytic_tolerance = ANALYTIC_FACTOR * columns.epsilon * (np.abs(finite_a) + rms)
    if 2.0 in x and not np.isnan(x[2.0]).any():
        d2 = (f[2.0] - f[-2.0]) / (x[2.0] - x[-2.0])
        numeric = (4 * d1 - d2) / 3
        tolerance = np.abs(numeric - d1) + 1.5 * noise / h + analytic_tolerance
    else:
        numeric, tolerance = d1, noise / h + analytic_tolerance
    gap = np.abs(a - numeric)
    # A NaN from the backward where the function itself is finite is wrong, never "within tolerance".
    broken = np.isnan(a) & ~np.isnan(numeric)
    suspect = ((gap > tolerance) & (gap > 0)) | broken
    kink = np.zeros_like(suspect)
    touched = np.flatnonzero(suspect.any(axis=0))
    if touched.size:
        for scale in SCALES:
            columns.fill(scale, touched)
        values = {0.0: columns.f0} | {s: f[s][:, touched] for s in SCALES}
        positions = {0.0: 0.0} | {s: x[s][touched][None, :] for s in SCALES}
        second = judge(values, positions, a[:, touched], analytic_tolerance[:, touched], columns.sigma)
        rows_suspect = suspect[:, touched]
        numeric[:, touched] = np.where(rows_suspect, second.numeric, numeric[:, touched])
        tolerance[:, touched] = np.where(rows_suspect, second.tolerance, tolerance[:, touched])
        # Only on evidence of a kink, never by a share of the block (a Jacobian block is mostly structural zeros:
        # no share of its entries is a safe allowance).
        kink[:, touched] = second.kink & rows_suspect
        near = np.zeros_like(suspect)
        near[:, touched] = second.near & rows_suspect
        if closer and near.any():
            _look_closer(columns, a, near, analytic_tolerance, numeric, tolerance, kink)
    bad = ((np.abs(a - numeric) > tolerance) | broken) & ~kink
    return EntryVerdict(numeric, tolerance, bad, kink)


def _look_closer(
    columns: Columns, a: F64, near: NDArray[np.bool_], analytic_tolerance: F64, numeric: F64, tolerance: F64,
    kink: NDArray[np.bool_],
) -> None:  # fmt: skip
    """The closer look for the ``near`` entries: ``numeric``, ``tolerance`` and ``kink`` updated in place."""
    touched = np.flatnonzero(near.any(axis=0))
    for scale in GRID:
        columns.fill(scale, touched)
    r, c = np.nonzero(near)
    x = columns.positions
    values = {0.0: columns.f0[r, 0]} | {s: columns.values[s][r, c] for s in GRID}
    positions = {0.0: np.zeros(r.size)} | {s: x[s][c] for s in GRID}
    sigma = np.broadcast_to(columns.sigma, a.shape)[r, c]
    look = closer_look(values, positions, (x[1.0][c] - x[-1.0][c]) / 2, a[r, c], analytic_tolerance[r, c], sigma)
    numeric[r, c], tolerance[r, c], kink[r, c] = look.numeric, look.tolerance, look.kink
