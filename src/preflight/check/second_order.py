"""Second-order checks: a Hessian-vector product against central differences of the gradient, entry by entry.

``gradcheck(loss, params, grads, hvp=...)`` (and ``preflight.torch.check_module(..., order=2)``) run this after the
first-order check has passed (a first-order failure is reported as such: the second order is then not checked). The
gradient ``grads(params)`` is the function checked, and its Jacobian, the Hessian, is what ``hvp(params, v)`` claims
to multiply by ``v``. Columns ``H d`` are checked for:

1. :data:`RANDOM_DIRECTIONS` random directions ``d`` over every tensor, and each tensor's own random direction (zero
   elsewhere): a few gradient evaluations each, whatever the parameter count;
2. every coordinate ``d = e_j`` (the full Hessian) up to :data:`FULL_HESSIAN` parameters, a stratified sample of
   :data:`SAMPLED_COLUMNS` coordinates above (at least 16 per tensor).

Each column's entries (one per gradient element) are judged by :func:`preflight.check.jacobian.judge_entries`, the
verdict every Jacobian gets: the rounding noise of every gradient element measured (ECnoise), Richardson-extrapolated
central differences at ``h`` and ``2h``, the second look (kinks, ties) for every entry outside its tolerance, and the
closer look (the gradient element along the column at the 60 positions of :data:`preflight.check.dense.GRID`, read by
least squares) for every entry the second look leaves undecided: the first-order engine's rule, applied to each
element of the gradient as a function along the column's direction (``g_i(theta + t d)``, whose slope at 0 is the
entry ``(H d)_i``). An entry is set aside only where a kink is seen; no share of a block is excused on the short
difference's agreement alone. A direction is scaled to one coordinate's step and quantized so that ``theta + k d`` is
exact for every position ``k`` used: the moves are collinear, and ``hvp`` is asked about exactly the direction moved
along.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.validation import describe
from preflight.check import numdiff
from preflight.check.dense import GRID
from preflight.check.diagnosis import diagnose
from preflight.check.hessian_results import Evidence, Group, RowNames, Symmetry, block_hints
from preflight.check.inputs import Leaves, analytic_gradient, course_names, moved_all, sample_coordinates
from preflight.check.jacobian import Columns, EntryVerdict, Evaluate, judge_entries
from preflight.check.report import GradcheckReport, TensorResult
from preflight.check.tree import flatten, ravel
from preflight.check.verdict import JUDGED_SHARE

__all__ = [
    "FULL_HESSIAN",
    "RANDOM_DIRECTIONS",
    "SAMPLED_COLUMNS",
    "SecondOrder",
    "attach",
    "check_hessian",
    "require_hvp",
]

F64 = NDArray[np.float64]
#: Up to this many parameters every column of the Hessian is checked (4 gradient evaluations and one product each).
FULL_HESSIAN = 2000
#: Above FULL_HESSIAN, this many columns (a stratified sample, at least 16 per tensor).
SAMPLED_COLUMNS = 256
#: Random directions over every tensor at once (besides each tensor's own).
RANDOM_DIRECTIONS = 3
#: Entries (gradient elements x columns) judged in one block: 32 MB per position of the difference stencil.
BLOCK_ENTRIES = 4_000_000
#: The positions of a direction's stencil, in units of its step: each must be exactly representable. The closer
#: look's grid holds every position the first and second looks use (+-1, +-2, +-1/16) and goes down to h/64.
POSITIONS = GRID
#: A direction's move is a whole number of this many ulps of each coordinate, so that 1/64 of it (the finest step of
#: :data:`POSITIONS`) is still a whole number of ulps.
GRID_ULPS = 64
#: A column with a kink inside its stencil is judged again at a step this many times shorter, at most RETRIES times
#: (a ReLU network's gradient in float32: see :func:`_judge_retrying`).
RETRY_SHRINK = 4.0
RETRIES = 2


@dataclass(frozen=True)
class SecondOrder:
    """What a second-order check adds to the report: its section, hints and notes, and what it cost."""

    results: dict[str, TensorResult]
    hints: list[str]
    notes: list[str]
    evaluations: int
    passed: bool
    stopped: str | None = None


def require_hvp(hvp: Any, grads: Any) -> None:
    """ValueError unless ``hvp`` and ``grads`` are callables (the check evaluates the gradient at moved params)."""
    if not callable(hvp):
        raise ValueError(f"hvp: expected a callable hvp(params, v) -> H v (structured as params), got {describe(hvp)}")
    if not callable(grads):
        raise ValueError(
            f"grads: the second-order check (hvp=...) differentiates the gradient, so it needs it as a callable "
            f"grads(params) -> gradient, got {describe(grads)}"
        )


def attach(report: GradcheckReport, run: Callable[[], SecondOrder]) -> GradcheckReport:
    """``report`` with the second-order check ``run()`` added, or, when the first order did not pass, a note saying
    the second order was not checked (a first-order failure is reported as such, never as a second-order one)."""
    if not report.passed:
        return replace(report, notes=[*report.notes, "second order not checked: the first-order check did not pass "
                                      "(fix the gradient first: the second order differentiates it)"])  # fmt: skip
    start = time.perf_counter()
    second = run()
    return replace(
        report,
        passed=second.passed,
        second_order=second.results,
        hints=[*report.hints, *(f"second order: {h}" for h in second.hints)],
        notes=[*report.notes, *second.notes],
        evaluations=report.evaluations + second.evaluations,
        seconds=report.seconds + time.perf_counter() - start,
        stopped=None if second.stopped is None else f"second order: {second.stopped}",
    )


class _Gradient:
    """The gradient under test as a function of the parameters (moved in place, always restored), one vector."""

    def __init__(self, grads: Callable[[Any], Any], params: Any, leaves: Leaves) -> None:
        self.grads, self.params, self.leaves = grads, params, leaves
        self.names = list(leaves)
        self.offsets = np.cumsum([0] + [a.size for a in leaves.values()])
        self.evaluations = 0
        self.epsilon = max(numdiff.machine_epsilon(a.dtype) for a in leaves.values())

    def __call__(self) -> F64:
        raw = self.grads(self.params)
        self.evaluations += 1
        for _, value in flatten(raw):
            dtype = np.asarray(value).dtype
            if np.issubdtype(dtype, np.floating):
                self.epsilon = max(self.epsilon, numdiff.machine_epsilon(dtype))
        named = analytic_gradient(raw, self.params, self.leaves)
        return np.concatenate([named[n].reshape(-1) for n in self.names])

    def along(self, move: F64) -> F64:
        """The gradient at ``theta + move`` (a float64 vector over every coordinate, exact in each dtype)."""
        with moved_all(self.leaves) as shift:
            shift({n: move[self.offsets[i] : self.offsets[i + 1]].reshape(a.shape)
                   for i, (n, a) in enumerate(self.leaves.items())})  # fmt: skip
            return self()

    def at(self, flat: int, value: float) -> tuple[F64, float]:
        """The gradient with coordinate ``flat`` set to ``value`` (rounded to its dtype), and the actual move."""
        i = int(np.searchsorted(self.offsets, flat, side="right")) - 1
        arr = self.leaves[self.names[i]]
        index = np.unravel_index(flat - int(self.offsets[i]), arr.shape)
        old = arr[index].copy()
        arr[index] = value
        move = float(arr[index]) - float(old)
        try:
            return self(), move
        finally:
            arr[index] = old


def check_hessian(
    params: Any, leaves: Leaves, grads: Callable[[Any], Any], hvp: Callable[[Any, Any], Any], *, seed: int,
    eps: float | None,
) -> SecondOrder:  # fmt: skip
    """Check ``hvp(params, v)`` against central differences of ``grads`` (module docstring)."""
    gradient = _Gradient(grads, params, leaves)
    product = _Product(hvp, params, leaves)
    rng = np.random.default_rng(seed + 104729)
    g0 = gradient()
    sigma = _noise(gradient, leaves, g0, seed)
    theta = np.concatenate([a.reshape(-1).astype(np.float64) for a in leaves.values()])
    base = eps if eps is not None else gradient.epsilon ** (1.0 / 3.0)
    steps = np.concatenate([numdiff.step_size(a.reshape(-1), eps=base).astype(np.float64) for a in leaves.values()])
    rows = RowNames(leaves)
    weights = Evidence(leaves, rng)
    notes: list[str] = []
    groups = _direction_groups(leaves, steps, rng, rows, gradient, product, g0, sigma, weights, notes)
    total = int(theta.size)
    index = sample_coordinates(leaves, None if total <= FULL_HESSIAN else SAMPLED_COLUMNS, rng)
    full = Symmetry(total) if total <= FULL_HESSIAN else None
    for i, (name, arr) in enumerate(leaves.items()):
        group = Group(f"H[:, {name}]", tuple(arr.shape), rows, name)
        start = int(gradient.offsets[i])
        _judge_columns(group, start, start + index[name], gradient, product, g0, sigma, theta, steps, weights, full)
        groups.append(group)
    results = {g.name: g.result() for g in groups}
    attempted, judged = sum(g.attempted for g in groups), sum(r.checked for r in results.values())
    conclusive = judged >= JUDGED_SHARE * attempted and judged > 0
    sampled = total > FULL_HESSIAN
    notes.append(
        f"second order: H v against central differences of the gradient (Richardson, h and 2h) for "
        f"{RANDOM_DIRECTIONS} random directions and each tensor's own, and "
        + (f"{sum(i.size for i in index.values())} sampled Hessian columns of {total}" if sampled else
           f"every column of the {total} x {total} Hessian")
        + f"; {gradient.evaluations:,} gradient evaluations, {product.calls:,} Hessian-vector products"
    )  # fmt: skip
    if not conclusive:
        notes.append("second order inconclusive: too few entries could be judged (kinks or steps of the gradient)")
    located = block_hints(groups, rows) + (full.hints(rows) if full is not None else [])
    patterns = diagnose(weights.evidence())
    # "No simple pattern" says nothing the blocks do not say better.
    hints = located + [h for h in patterns if not (located and "no simple pattern" in h)]
    return SecondOrder(
        results=results,
        hints=hints,
        notes=notes,
        evaluations=gradient.evaluations,
        passed=conclusive and all(r.passed for r in results.values()),
    )


def _direction_groups(
    leaves: Leaves, steps: F64, rng: np.random.Generator, rows: RowNames, gradient: _Gradient, product: _Product,
    g0: F64, sigma: F64, weights: Evidence, notes: list[str],
) -> list[Group]:  # fmt: skip
    """The random directions over every tensor, then each tensor's own: one group each."""
    groups = []
    for name, mask in [("H v, v random", None), *((f"H v, v along {n}", n) for n in leaves)]:
        count = RANDOM_DIRECTIONS if mask is None else 1
        raws = [_direction(leaves, steps, rng, mask) for _ in range(count)]
        raws = [r for r in raws if np.any(_exact(leaves, r))]
        if not raws:
            notes.append(f"second order: {name}: no coordinate could be moved exactly along a direction; not checked")
            continue
        group = Group(name, (len(raws),) if mask is None else (), rows, mask)
        _judge_directions(group, raws, leaves, gradient, product, g0, sigma, weights)
        groups.append(group)
    return groups


class _Product:
    """``hvp(params, v)`` for a float64 vector ``v``, validated, as one float64 vector."""

    def __init__(self, hvp: Callable[[Any, Any], Any], params: Any, leaves: Leaves) -> None:
        self.hvp, self.params, self.leaves = hvp, params, leaves
        _, self.spec = ravel(params)
        self.dtype = np.result_type(*leaves.values())
        self.calls = 0

    def __call__(self, v: F64) -> F64:
        direction = self.spec.unravel(v.astype(self.dtype))
        result = self.hvp(self.params, direction)
        self.calls += 1
        named = course_names(dict(flatten(result)), self.leaves)
        out = []
        for name, arr in self.leaves.items():
            value = np.asarray(named[name])
            if value.shape != arr.shape or not np.issubdtype(value.dtype, np.number):
                raise ValueError(f"hvp: expected H v structured as params, with {name!r} a numeric array of shape "
                                 f"{arr.shape}, got {describe(named[name])}")  # fmt: skip
            if not np.all(np.isfinite(value)):
                raise ValueError(f"hvp: H v is not finite in {name!r}")
            out.append(value.astype(np.float64).reshape(-1))
        return np.concatenate(out)


def _noise(gradient: _Gradient, leaves: Leaves, g0: F64, seed: int) -> F64:
    """The rounding noise of every gradient element: ECnoise on 16 evaluations a few ulps apart (as a function's)."""
    rng = np.random.default_rng(seed + 7919)
    directions = {
        n: rng.choice([-1.0, 1.0], size=a.shape) * 16 * gradient.epsilon * np.maximum(1.0, np.abs(a))
        for n, a in leaves.items()
    }
    values = []
    with moved_all(leaves) as move:
        for k in range(16):
            move({n: k * d for n, d in directions.items()})
            values.append(gradient())
    sigma = numdiff.estimate_noise_rows(np.stack(values, axis=1))
    # Never below the rounding of the element's own value (an element the probe did not move).
    return np.maximum(sigma, gradient.epsilon * np.abs(g0))[:, None]


def _direction(leaves: Leaves, steps: F64, rng: np.random.Generator, only: str | None) -> F64:
    """A random move of one coordinate step's length, zero outside tensor ``only`` (when given)."""
    chosen = [n for n in leaves if only is None or n == only]
    count = sum(leaves[n].size for n in chosen)
    mask = np.concatenate([np.full(a.size, n in chosen) for n, a in leaves.items()])
    return np.where(mask, steps * rng.standard_normal(steps.size) / math.sqrt(count), 0.0)


def _exact(leaves: Leaves, raw: F64) -> F64:
    """``raw`` on a grid of :data:`GRID_ULPS` ulps of each coordinate, so that ``theta + k move`` is exact for every
    k of :data:`POSITIONS` (coordinates where it still is not: not moved)."""
    out, offset = [], 0
    for arr in leaves.values():
        size, theta = arr.size, arr.reshape(-1).astype(np.float64)
        part = raw[offset : offset + size]
        offset += size
        if not part.any():  # a tensor the direction does not move
            out.append(np.zeros(size))
            continue
        grid = GRID_ULPS * np.spacing((np.abs(theta) + 4 * np.abs(part)).astype(arr.dtype)).astype(np.float64)
        move = np.round(part / grid) * grid
        # Every target theta + j move / GRID_ULPS (|j| <= 2 GRID_ULPS: all of POSITIONS) is exact when theta and
        # move / GRID_ULPS are whole multiples of the spacing at the farthest target (spacing grows with magnitude).
        farthest = np.spacing((np.abs(theta) + 2 * np.abs(move)).astype(arr.dtype)).astype(np.float64)
        units = (theta / farthest, move / (GRID_ULPS * farthest))  # exact: divisions by powers of 2
        exact = (units[0] == np.round(units[0])) & (units[1] == np.round(units[1]))
        out.append(np.where(exact, move, 0.0))
    return np.concatenate(out)


def _judge_directions(
    group: Group, raws: list[F64], leaves: Leaves, gradient: _Gradient, product: _Product, g0: F64, sigma: F64,
    weights: Evidence,
) -> None:  # fmt: skip
    """Each direction is one column: positions in units of its move (made exact by :func:`_exact`)."""
    moves: dict[tuple[int, int], F64] = {}

    def move(level: int, j: int) -> F64:
        if (level, j) not in moves:
            moves[level, j] = _exact(leaves, raws[j] / RETRY_SHRINK**level)
        return moves[level, j]

    def evaluate_at(level: int, which: NDArray[np.intp]) -> Evaluate:
        def evaluate(scale: float, local: NDArray[np.intp]) -> tuple[F64, F64]:
            values = [gradient.along(scale * move(level, int(j))) for j in which[local]]
            return np.stack(values, axis=1) if values else np.zeros((g0.size, 0)), np.full(len(values), scale)

        return evaluate

    def analytic_at(level: int, which: NDArray[np.intp]) -> F64:
        return np.stack([product(move(level, int(j))) for j in which], axis=1)

    analytic, verdict, levels = _judge_retrying(len(raws), evaluate_at, analytic_at, g0, sigma, gradient.epsilon)
    group.add(analytic, verdict, [(j,) for j in range(len(raws))] if group.shape else [()])
    norms = [np.linalg.norm(move(int(level), j)) for j, level in enumerate(levels)]
    weights.add(analytic, verdict, np.array([1.0 / n if n > 0 else 0.0 for n in norms]))


def _judge_columns(
    group: Group, start: int, columns: NDArray[np.intp], gradient: _Gradient, product: _Product, g0: F64,
    sigma: F64, theta: F64, steps: F64, weights: Evidence, full: Symmetry | None,
) -> None:  # fmt: skip
    """Hessian columns ``H e_j`` for the coordinates ``columns`` (flat over every tensor) of the tensor starting at
    ``start``, in blocks of at most :data:`BLOCK_ENTRIES` entries."""
    per_block = max(1, BLOCK_ENTRIES // max(1, g0.size))
    shape = group.shape
    for first in range(0, columns.size, per_block):
        block = columns[first : first + per_block]

        def evaluate_at(level: int, which: NDArray[np.intp], block: NDArray[np.intp] = block) -> Evaluate:
            def evaluate(scale: float, local: NDArray[np.intp]) -> tuple[F64, F64]:
                values, moves = [], []
                for j in block[which[local]].tolist():
                    value, moved = gradient.at(j, theta[j] + scale * steps[j] / RETRY_SHRINK**level)
                    values.append(value)
                    moves.append(moved)
                return np.stack(values, axis=1) if values else np.zeros((g0.size, 0)), np.array(moves)

            return evaluate

        def analytic_at(level: int, which: NDArray[np.intp], block: NDArray[np.intp] = block) -> F64:
            return np.stack([product(_unit(theta.size, j)) for j in block[which].tolist()], axis=1)

        analytic, verdict, _ = _judge_retrying(block.size, evaluate_at, analytic_at, g0, sigma, gradient.epsilon)
        located = [tuple(int(i) for i in np.unravel_index(j - start, shape)) if shape else () for j in block.tolist()]
        group.add(analytic, verdict, located)
        weights.add(analytic, verdict, np.ones(block.size))
        if full is not None:
            full.add(block, analytic, verdict)


def _judge_retrying(
    count: int, evaluate_at: Callable[[int, NDArray[np.intp]], Evaluate],
    analytic_at: Callable[[int, NDArray[np.intp]], F64], g0: F64, sigma: F64, epsilon: float,
) -> tuple[F64, EntryVerdict, NDArray[np.intp]]:  # fmt: skip
    """Judge ``count`` columns; a column with a kink inside its stencil is judged again at a step
    :data:`RETRY_SHRINK` times shorter (up to :data:`RETRIES` times), which crosses that many times fewer kinks.

    A ReLU network's gradient has kinks (and jumps) wherever a sample's pre-activation crosses 0; a column moves
    every sample's pre-activations, and in float32 (a step of 5e-3) many cross within 2h, each setting entries aside.
    A shorter step is judged with its own, larger, rounding tolerance: calibrated as ever. Columns without a kink seen
    (by the second look or the closer look) keep their first verdict (a bug alone is never retried). Returns the
    analytic columns, the verdict, and the level (number of shrinks) each column was judged at.
    """
    which = np.arange(count)
    analytic = analytic_at(0, which)
    verdict = _judge_once(evaluate_at(0, which), analytic, g0, sigma, epsilon)
    levels = np.zeros(count, dtype=np.intp)
    for level in range(1, RETRIES + 1):
        kinked = np.flatnonzero(verdict.kink.any(axis=0))
        if kinked.size == 0:
            break
        again = analytic_at(level, kinked)
        retried = _judge_once(evaluate_at(level, kinked), again, g0, sigma, epsilon)
        analytic[:, kinked] = again
        parts = (verdict.numeric, verdict.tolerance, verdict.bad, verdict.kink)
        for whole, part in zip(parts, (retried.numeric, retried.tolerance, retried.bad, retried.kink), strict=True):
            whole[:, kinked] = part
        levels[kinked] = level
    return analytic, verdict, levels


def _judge_once(evaluate: Evaluate, analytic: F64, g0: F64, sigma: F64, epsilon: float) -> EntryVerdict:
    """judge_entries on columns evaluated at +-h and +-2h (more on demand), with the closer look: a column moves
    along its own direction or coordinate wherever the verdict asks."""
    columns = Columns(g0[:, None], sigma, epsilon, analytic.shape[1], evaluate)
    for scale in (1.0, -1.0, 2.0, -2.0):
        columns.fill(scale, np.arange(analytic.shape[1]))
    return judge_entries(columns, analytic, closer=True)


def _unit(size: int, j: int) -> F64:
    out = np.zeros(size)
    out[j] = 1.0
    return out
