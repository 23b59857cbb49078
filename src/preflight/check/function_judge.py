"""The verdict on one input's block in ``check_function``: the first look, rows on a grid, smaller steps.

:func:`judge_block` takes an input's :class:`~preflight.check.function_steps.Block` and the backward's rows:

- the engine's verdict per entry (:func:`preflight.check.jacobian.judge_entries`);
- failing entries of rows that round coarser than their measured noise, judged with the row's grid
  (:mod:`preflight.check.quanta`): they fail, pass, or are *not resolved* at the step;
- an element with failing entries is looked at again with half the step: where the estimates at h and h/2 agree,
  the failure stands (a smooth function's derivative settled at h: a real bug); where they do not, the step
  straddled a pole or a jump (tan near pi/2), and the step keeps halving until two successive estimates agree,
  whose verdict then holds. Where the backward says flat (exactly 0) the values must also be smooth over the span
  of the estimate that settles (:func:`_smooth`): a staircase finer than the step (``round(x, 3)`` in float32)
  settles only where the step shrinks onto one stair. Whatever the backward says, the estimate that settles must
  come from values free of stairs over its span (:func:`_stair_free`): a staircase finer than the step times a
  smooth function (``tanh(round(x, 3)) x`` in float32) has a mean slope the backward does not see, on which the
  estimates at h and h/2 agree. An element whose estimates never settle is named as not checkable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.check import numdiff
from preflight.check import quanta as grid
from preflight.check.dense import GRID, Closer, closer_look
from preflight.check.function_steps import MAX_HALVINGS, Block, Verdict, name_unresolved, named
from preflight.check.jacobian import Columns, judge_entries
from preflight.check.kinks import KINK_EVIDENCE, ROUNDING_FACTOR, SHORT
from preflight.check.quanta import probe_jumps
from preflight.check.reference import suspects
from preflight.check.verdict import ANALYTIC_FACTOR

__all__ = ["MIDDLE", "first_look", "judge_block"]

A = NDArray[Any]
F64 = NDArray[np.float64]
Index = NDArray[np.intp]


def _restricted(level: Columns, cols: Index) -> Columns:
    """``level``'s columns ``cols`` as a block of their own (sharing its evaluations), +-h and +-2h filled."""

    def evaluate(scale: float, sub: Index) -> tuple[F64, F64]:
        level.fill(scale, cols[sub])
        return level.values[scale][:, cols[sub]], level.positions[scale][cols[sub]]

    out = Columns(level.f0, level.sigma, level.epsilon, cols.size, evaluate)
    for scale in (1.0, -1.0, 2.0, -2.0):
        out.fill(scale, np.arange(cols.size))
    return out


#: A second short position of the smoothness test, as a fraction of h: irrational, so that a staircase's stairs
#: do not fall on it at the ratio they fall on +-h/16, +-h and +-2h (a staircase can look exactly linear there).
MIDDLE = 0.5**0.5
_SMOOTH_SCALES = (-2.0, -1.0, -SHORT, SHORT, -MIDDLE, MIDDLE, 1.0, 2.0)
#: The positions of the smoothness test at h/2 that are not already positions of the test at h.
_FIRST_HALF = (-1.0, -MIDDLE, -SHORT, SHORT, MIDDLE, 1.0)


def _smooth(level: Columns, cols: Index) -> NDArray[np.bool_]:
    """Per entry of ``cols``, whether its values show no step or kink in the level's span: the fourth difference
    at +-h, +-2h within the kink test's allowance for noise (:data:`preflight.check.kinks.KINK_EVIDENCE`), and the
    central differences over +-h/16 and +-h/sqrt(2) within the kink test's allowance around Richardson's value (their
    rounding, t^2 times the truncation Richardson measured at h, and Richardson's own rounding). A staircase sampled
    symmetrically has a fourth difference of 0, but slopes of its own over other widths."""
    for scale in _SMOOTH_SCALES:
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


#: The stairs test's positions, in units of the level's h: +-h and +-2h (the estimate's own) and a ladder of ratio
#: the golden ratio from h / phi down to h / phi^6 = h / 18 on either side. A staircase finer than the span falls on
#: a smooth curve only where every position sits at the same phase of its stairs. Positions in a rational ratio do so
#: whenever the smallest spans a whole number of stairs (a ladder of ratio 2 from h/16: round(x, 4) at x = -1.3143 in
#: float32, h/16 = 1.011e-4 and every rung within 0.04 of a whole number of stairs); in the golden ratio, the most
#: irrational, the phases drift apart from rung to rung, as the stairs are not wider than the span.
PHI = (1 + 5**0.5) / 2
RUNGS = tuple(PHI**-j for j in range(1, 7))
LADDER = tuple(sorted({-2.0, -1.0, 1.0, 2.0} | {s * r for r in RUNGS for s in (-1.0, 1.0)}))


#: Values are free of stairs while their rms distance from one cubic (over its degrees of freedom) stays within this
#: many times their row's noise: the first look's rounding allowance, ROUNDING_FACTOR sigma / h on a difference over
#: 2h, lets each value be off by up to half of ROUNDING_FACTOR sigma. Float32 rows round on a grid coarser than the
#: noise the probe reads (the weight of a float32 linear layer: 2.3 sigma rms off a cubic), which the first look
#: already allows for; a staircase's sawtooth has 0.29 J rms, seen from jumps of J = 17 sigma on, and a staircase
#: biases the estimate beyond the first look's tolerance only with jumps of that size or several stairs in the span.
STAIR_RMS = ROUNDING_FACTOR / 2


def _stair_rms(sources: Sequence[tuple[Columns, Sequence[float]]], cols: Index) -> F64:
    """Per entry of ``cols`` ``(R, k)``, the rms distance (over its degrees of freedom) of its values at the
    ``sources``' positions (levels and their scales) and at the point from one cubic."""
    xs, fs = [], []
    for level, scales in sources:
        for scale in scales:
            level.fill(scale, cols)
            xs.append(level.positions[scale][cols])
            fs.append(level.values[scale][:, cols] - level.f0)
    rows, k = fs[0].shape[0], cols.size
    x = np.stack(xs, axis=-1)  # (k, P)
    u = np.concatenate([np.zeros((k, 1)), x / np.max(np.abs(x), axis=-1, keepdims=True)], axis=-1)
    f = np.concatenate([np.zeros((rows, k, 1)), np.stack(fs, axis=-1)], axis=-1)  # (R, k, P + 1)
    design = np.stack([u**p for p in range(4)], axis=-1)  # (k, P + 1, 4)
    with np.errstate(all="ignore"):
        fitted = np.einsum("kpq,kqj,rkj->rkp", design, np.linalg.pinv(design), f)
        out: F64 = np.sqrt(np.sum((f - fitted) ** 2, axis=-1) / (u.shape[-1] - 4))
    return out


def _stair_free(sources: Sequence[tuple[Columns, Sequence[float]]], cols: Index, quantum: F64) -> NDArray[np.bool_]:
    """Per entry of ``cols``, whether its values at the ``sources``' positions (levels and their scales) and the
    point lie on one cubic (:func:`_stair_rms`) within :data:`STAIR_RMS` times their row's noise (the measured
    sigma, or the row's grid ``quantum (R, 1)`` where that is more): a jump of many sigma within the span (a stair
    of ``round`` or ``floor`` times a smooth function) leaves residuals of about half its size, a smooth function
    (its quartic term, a fourth derivative times (2h)^4 / 24, far below the noise at the check's step) none."""
    out: NDArray[np.bool_] = _stair_rms(sources, cols) <= STAIR_RMS * np.maximum(sources[0][0].sigma, quantum)
    return out


def _flat_or_smooth(
    level: Columns, cols: Index, stairs: F64, wanted: NDArray[np.bool_], closer: bool
) -> NDArray[np.bool_]:
    """Per entry of ``cols``, whether its values are flat (every position on the point's value) or smooth over the
    level's span; ``wanted``: the entries asked about. Smooth: :func:`_smooth`; in a row whose noise probe crossed
    stairs (``stairs`` > 0), flat only: the probe read the stairs as noise, within which a staircase looks smooth;
    and with ``closer``, for the entries still smooth but not flat, the closer look agrees
    (:func:`preflight.check.dense.closer_look`: every window across the point out to 2h a cubic within the noise):
    nine positions can fall on a staircase finer than their spacing as on a line (round(x, 4) in float32 at h/4:
    fourth difference 0, the short slopes within 1 % of the mean slope); sixty cannot."""
    out = _smooth(level, cols)
    flat = np.all([level.values[s][:, cols] == level.f0 for s in _SMOOTH_SCALES], axis=0)
    out = np.where(stairs > 0, flat, out)
    look = out & wanted & ~flat
    seen = np.flatnonzero(look.any(axis=0)) if closer else np.zeros(0, dtype=np.intp)
    if seen.size:
        smooth = _closer_look(level, cols[seen], np.zeros((level.f0.shape[0], seen.size)), level.sigma).smooth
        out[:, seen] &= smooth | ~look[:, seen]
    return out


def _closer_look(level: Columns, cols: Index, a: F64, sigma: F64) -> Closer:
    """The closer look (:func:`preflight.check.dense.closer_look`) at every entry ``(R, cols)`` of the level, its
    positions of :data:`preflight.check.dense.GRID` evaluated for ``cols``; the fields are ``(R, cols)`` arrays."""
    for scale in GRID:
        level.fill(scale, cols)
    rows, k = level.f0.shape[0], cols.size
    values = {0.0: np.repeat(level.f0, k, axis=1).ravel()} | {s: level.values[s][:, cols].ravel() for s in GRID}
    positions = {0.0: np.zeros(rows * k)} | {
        s: np.broadcast_to(level.positions[s][cols][None, :], (rows, k)).ravel() for s in GRID
    }
    h = (positions[1.0] - positions[-1.0]) / 2
    noise = np.broadcast_to(sigma, (rows, k)).ravel()
    look = closer_look(values, positions, h, a.ravel(), np.zeros(rows * k), noise)
    shape = (rows, k)
    return Closer(look.numeric.reshape(shape), look.tolerance.reshape(shape), look.kink.reshape(shape),
                  look.smooth.reshape(shape), look.off.reshape(shape))  # fmt: skip


def _settle(
    block: Block, a: F64, failing: Index, verdict: list[A], quantum: F64 | None, behind: bool = True,
    kinks: NDArray[np.bool_] | None = None,
) -> None:  # fmt: skip
    """The second look with smaller steps at the ``failing`` columns (positions in ``usable``): ``verdict``
    (numeric, tolerance, bad, kink over the usable columns) is updated where the step had straddled a pole or jump.
    ``quantum``: each row's grid (None: none known), for the stairs test (:func:`_stair_free`); ``behind``: look for
    stairs behind the failures that settled (:func:`_stairs_behind`); ``kinks``: entries set aside as kinks that are
    looked at as if failing (a float32 check's failures, in its float64 copy:
    :func:`preflight.check.reference.suspects`)."""
    grid = np.zeros_like(block.columns.f0) if quantum is None else np.asarray(quantum, dtype=np.float64)[:, None]
    numeric, tolerance, bad, kink = verdict
    was_bad: NDArray[np.bool_] = bad[:, failing] | (False if kinks is None else kinks[:, failing])
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
        stairs = np.zeros_like(block.columns.f0) if block.stairs is None else block.stairs
        flat_claim = a[:, cols] == 0
        # The closer look costs 56 evaluations per element: at the full step, where a smooth function's bug (the
        # backward's 0 where it has a slope) settles in as many entries as the bug touches, the values at h/2 must be
        # smooth too instead; smaller steps, which only an element not smooth at the full step reaches, take it.
        if k == 1:
            smooth = _flat_or_smooth(block.level(0), cols, stairs, flat_claim, closer=False)
            smooth &= _flat_or_smooth(block.level(1), cols, stairs, flat_claim, closer=False)
        else:
            smooth = _flat_or_smooth(block.level(k), cols, stairs, flat_claim, closer=True)
        agree &= smooth | ~flat_claim
        # Every estimate that settles must come from values free of stairs over its span: a staircase finer than the
        # step times a smooth function (tanh(round(x, 3)) x in float32) has a mean slope the backward does not see
        # (round's derivative is 0), on which the estimates at h and h/2 agree.
        # At the full step, the positions the smoothness tests of h and h/2 already took (+-2h, +-h, +-h/sqrt(2),
        # +-h/2, +-h/(2 sqrt(2)), +-h/16, +-h/32: the irrational ones break a dyadic alias) serve; smaller steps, which
        # only an element not smooth at the full step reaches, take the golden ladder.
        if k == 1:
            sources = [(block.level(0), _SMOOTH_SCALES), (block.level(1), _FIRST_HALF)]
        else:
            sources = [(block.level(k), LADDER)]
        agree &= _stair_free(sources, cols, grid)
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
    if behind:
        _stairs_behind(block, failing[np.isin(failing, failing[pending], invert=True)], verdict, smaller, grid)
    fresh = block.unreported("smaller", smaller)
    if fresh:
        block.notes.append(
            f"{block.label}: {len(fresh)} element(s) judged with a smaller step (down to 1/{2 ** max(smaller.values())}"
            " of it): their estimates at the full step did not settle (a pole or a jump within the step): "
            f"{named(block.label, block.shape, block.usable[fresh])}"
        )


#: A failing entry's values at the positions of its estimate must lie on one cubic within this many times the noise
#: along its own coordinate (ECnoise on 16 moves of its element, 16 ulps apart): the rms of 11 to 13 residuals of
#: pure noise stays within 1.6 of it (chi-square, 1e-4), with room for the +-40 % of a 16-value reading. Stairs of
#: 10 to 20 sigma (tanh(round(x, 3)) x at x = 4 in float32: 80 of them in the span, each 1e-3 x sech^2 x = 15
#: sigma) leave 3 to 6 sigma, below the allowance for rounding on a coarser grid the probe cannot see
#: (:data:`STAIR_RMS`), and move the estimate by their mean slope, 4e-3 there, ten times its tolerance.
COORDINATE_RMS = 2.5


def _stairs_behind(block: Block, cols: Index, verdict: list[A], smaller: dict[int, int], grid: F64) -> None:
    """The failing entries of the settled ``cols`` whose values show stairs against the noise along their own
    coordinate are set aside (:attr:`Block.staircase`): their estimate is the stairs' mean slope."""
    bad = verdict[2]
    cols = cols[bad[:, cols].any(axis=0)]
    if not cols.size:
        return
    # 16 ulps of the element (h is cbrt(epsilon) max(1, |x|)), of the coarser of the input's and the outputs' dtypes.
    epsilon = max(block.columns.epsilon, block.coarse_epsilon)
    tiny = 16 * epsilon ** (2 / 3) * block.h
    steps = [block.move(tiny, float(k), block.usable[cols])[0] for k in range(1, 16)]
    values = np.stack([np.repeat(block.columns.f0, cols.size, axis=1), *steps], axis=-1)  # (R, k, 16)
    rows, k = values.shape[:2]
    flat = values.reshape(rows * k, 16)
    with np.errstate(all="ignore"):
        noise = numdiff.estimate_noise_rows(flat)
        clean, _ = probe_jumps(flat, epsilon * np.repeat(np.abs(block.columns.f0[:, 0]), k))
    noise = np.where(np.isfinite(clean), clean, noise).reshape(rows, k)
    # Never below half the rounding of the row's value alone (an element whose tiny moves leave the row exact), nor
    # half the row's measured noise (a backward's rounding at the scale of the steps, which tiny moves do not see:
    # preflight.torch._backward_noise).
    floor = np.maximum(epsilon * np.abs(block.columns.f0), block.columns.sigma) / 2
    noise = np.maximum(noise, np.broadcast_to(floor, (rows, k)))
    stairs = np.zeros((rows, k), dtype=bool)
    for level in sorted({smaller.get(int(c), 1) for c in cols}):
        at = np.flatnonzero([smaller.get(int(c), 1) == level for c in cols])
        if level == 1:
            sources = [(block.level(0), _SMOOTH_SCALES), (block.level(1), _FIRST_HALF)]
        else:
            sources = [(block.level(level), LADDER)]
        rms = _stair_rms(sources, cols[at])
        stairs[:, at] = rms > COORDINATE_RMS * np.maximum(noise[:, at], grid)
    seen = cols[(stairs & bad[:, cols]).any(axis=0)]
    block.staircase.update(seen.tolist())


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


def _quantized(
    block: Block, a: F64, verdict: list[A], pooled: F64, showing: NDArray[np.int_] | None = None
) -> NDArray[np.bool_]:
    """Failing entries of rows that round coarser than their measured noise judged again with the row's grid
    (:func:`preflight.check.quanta.rejudge`), and so are the entries the kink test set aside in rows whose grid an
    entry other than their own shows (``showing``: how many entries of each row show it): the kink test's evidence,
    a fourth difference or one-sided slopes beyond the measured noise, is what the grid itself shows (the float32 MLP
    of tests/test_torch_function_quanta.py: "kinks" in 87 entries of a smooth function at seed 8). Where the grid
    explains the values (the entry passes, or cannot be resolved), the entry is judged or not resolved, not a kink;
    where it does not, the kink stands. (A grid only the entry itself shows can be a kink's flat side: ``relu`` just
    left of 0 reads 0, 0, 0, h - |x|, 2h - |x|, whole multiples of h - |x| for about a fifth of the offsets; an entry
    with a level of its own needs two others.)
    ``verdict`` is updated, the entries not resolved returned. ``pooled``: each
    row's grid from every input's first look; the second look's +-h/16 here may show more."""
    numeric, tolerance, bad, kink = verdict
    columns = block.columns
    local = _local_quanta(columns)
    quantum = np.where((local > 0) & ((pooled == 0) | (local < pooled)), local, pooled)
    unresolved = np.zeros_like(bad)
    suspect = bad.copy()
    if showing is not None and kink.any():
        values = first_look(block)
        own = grid.showing_quanta(pooled, grid.entry_quanta(values, columns.sigma))
        # An entry with a level of its own (a flat side) needs two others to show the grid: at a tie of max(a, b)
        # the two entries of a row mirror each other, each with a flat side on the same quantum.
        level = np.any(np.diff(values, axis=-1) == 0, axis=-1)
        others = showing[:, None] - own
        suspect |= kink & ((others >= 2) | ((others >= 1) & ~level))
    cols = np.flatnonzero(suspect.any(axis=0))
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
    gridded = suspect[:, cols] & (quantum[:, None] > 0)
    # A kink the grid does not explain stands as it was (set aside, not failing).
    standing = gridded & kink[:, cols] & r.bad
    gridded &= ~standing
    kink[:, cols] &= ~gridded
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


def judge_block(
    block: Block, analytic: A, quantum: F64 | None = None, showing: NDArray[np.int_] | None = None,
    behind: bool = True,
) -> tuple[F64, Verdict]:  # fmt: skip
    """The verdict on one input's block ``analytic (R, n)``; entries of elements not moved are skipped (and zeroed
    in the returned analytic block). ``quantum``: each row's grid (:func:`preflight.check.quanta.row_quanta`), for
    the failing entries of rows that round coarser than their measured noise; ``showing``: how many entries of each
    row show its grid (the kinks of a row whose grid another entry shows are judged with it too)."""
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
                unresolved[:, cols] = _quantized(block, usable, verdict, quantum, showing)
        # The float32 check's failures its float64 copy sets aside as kinks get the second look too (None elsewhere).
        suspect = suspects(block.label, a.shape)
        kinks = None if suspect is None else np.logical_and(verdict[3], suspect[:, cols])
        failing = np.flatnonzero(verdict[2].any(axis=0) | (False if kinks is None else kinks.any(axis=0)))
        if failing.size:
            _settle(block, usable, failing, verdict, quantum, behind, kinks)
        numeric[:, cols], tolerance[:, cols], bad[:, cols], kink[:, cols] = verdict
        skip[:, cols] = False
        unresolved[:, cols] &= ~bad[:, cols]
        skip |= unresolved
        name_unresolved(block, unresolved)
    for reason, positions in (
        ("outputs not finite at a later position of the check (the edge of the function's domain)", block.late),
        ("the derivative estimates do not settle as the step shrinks (a pole or a jump within the step)",
         block.unsettled),
        ("the estimate settled on the mean slope of stairs finer than its span (a staircase: round, floor, ceil or "
         "trunc times a smooth function), whose jumps its values show against the noise along the element",
         block.staircase),
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
