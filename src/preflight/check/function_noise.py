"""A function's output rows as a Jacobian check reads them: their rounding noise, stairs the probe crossed, grid.

Shared by every adapter's ``check_function`` (``preflight.torch``, ``preflight.jax``), which only evaluate: the
adapter hands over ``rows_at(moved inputs) -> output rows`` and the checked inputs' values, and gets back what
:func:`preflight.check.function_judge.judge_block` needs about each row:

- :func:`probe_noise`: each row's rounding noise, measured (ECnoise on a probe of 16 positions), and the stairs the
  probe crossed (a staircase such as ``round(x, 3)``, whose jumps ECnoise would read as noise);
- :func:`default_steps`: the check's step per input element;
- :func:`row_grids`: each row's grid where it rounds coarser than its measured noise, from every input's first look
  (:mod:`preflight.check.quanta`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from preflight.check import numdiff
from preflight.check.function_judge import first_look
from preflight.check.function_steps import Block
from preflight.check.quanta import entry_quanta, probe_jumps, row_quanta, shared_quanta, showing_quanta

__all__ = ["ProbedRows", "RowsAt", "default_steps", "probe_noise", "row_grids"]

F64 = NDArray[np.float64]
#: The output rows ``(R,)`` at the checked inputs moved to the given float64 values (the adapter rounds each to its
#: input's dtype, round to nearest, and leaves every other input as it was).
RowsAt = Callable[[list[F64]], F64]
#: Positions of the noise probe: ECnoise's third to sixth differences need at least 8; 16 halve their spread.
PROBE_POSITIONS = 16


class ProbedRows(NamedTuple):
    """What the noise probe read, per output row ``(R, 1)``."""

    #: The measured noise, never below the rounding of the row's own value.
    sigma: F64
    #: The stairs the probe crossed (0 where none).
    stairs: F64


def probe_noise(
    rows_at: RowsAt, points: Sequence[Any], f0: Any, *, epsilon: float, output_epsilon: float, seed: int
) -> ProbedRows:
    """The rounding noise of each output row, measured: ECnoise on 16 evaluations along a random direction that
    moves every checked (finite) element by a few ulps of ``epsilon`` (the coarser of the inputs' dtype and the
    outputs'), on 16 more at 2^-18 of the check's step where that is more, and on 16 more along another direction;
    the largest reading of each row is kept.

    Parameters
    ----------
    rows_at : callable
        The output rows ``(R,)`` at the checked inputs moved to the given float64 values (:data:`RowsAt`).
    points : sequence of arrays
        The checked inputs' values, in float64 (an element that is not finite is not moved).
    f0 : array
        The rows at the unmoved inputs ``(R, 1)``.
    epsilon, output_epsilon : float
        The machine epsilon of the probe's moves, and of the outputs (the floor of each row's noise is
        ``output_epsilon x |f0|``).
    seed : int
        Draws the probe's direction (the same direction for the same inputs in every adapter).

    Returns
    -------
    ProbedRows
        ``(sigma, stairs)``, each ``(R, 1)``.

    Examples
    --------
    >>> x = np.linspace(0.5, 1.5, 5)
    >>> rows = lambda moved: np.array([np.sum(np.float32(moved[0]) ** 2, dtype=np.float32)], dtype=np.float64)
    >>> probed = probe_noise(rows, [x], rows([x])[:, None], epsilon=2.0**-23, output_epsilon=2.0**-23, seed=0)
    >>> bool(0 < probed.sigma[0, 0] < 1e-5), float(probed.stairs[0, 0])
    (True, 0.0)
    """
    generator = np.random.default_rng(seed + 7919)
    f0 = np.asarray(f0, dtype=np.float64)

    def direction() -> list[F64]:
        out = []
        for x in points:
            x = np.asarray(x, dtype=np.float64)
            sign = generator.choice([-1.0, 1.0], size=x.shape)
            # Magnitudes drawn in [0.5, 1), not all a power of two: equal dyadic moves can cancel inside a sum (a
            # softmax backward's sum(g y)) or leave low bits unchanged (grid coordinates scaled by a power of two),
            # and the probe would then read less noise than the steps of the check carry.
            sign = sign * generator.uniform(0.5, 1.0, size=x.shape)
            out.append(sign * np.where(np.isfinite(x), np.maximum(np.abs(x), 1.0), 0.0))
        return out

    # Two probes, the larger reading of each row kept: moves of a few ulps, and moves of 2^-18 of the check's
    # step (cbrt(eps) |x|: 1e5 float64 ulps). Moves of a few ulps can leave a rounding unchanged when the terms it
    # rounds move together: in y (g - sum(g y)) with y = 1 - c, a move of g re-rolls the rounding of the
    # difference only once it reaches 1 / c ulps (c = 3.5e-4 in an op-database sample), which the check's own
    # steps do. 15 such moves span 2^-14 of the step, far inside the kinks the second look resolves (h / 16). In
    # float32, 2^-18 of the step is below a few ulps: the one probe serves.
    #
    # A third probe, along another direction with steps 1.618 times the larger: a row that rounds on a grid coarser
    # than its value's ulps (log(1 + e) in a dominant class's log-softmax: a grid of ulp(1) under a value of 3.6e-4)
    # shows no noise along a direction whose every step moves it by a near-whole number of grid cells; an
    # incommensurate step on an independent direction does not repeat the coincidence (measured: the 2-layer float64
    # MLP of tests/second_order_functions.py at float32-rounded inputs, seed 9, read 8e-20 where its steps carry
    # 1e-16, and failed a correct entry).
    sigma, grid = np.zeros(len(f0)), np.zeros(len(f0))
    floor = output_epsilon * np.abs(f0[:, 0])
    first, larger = direction(), max(16 * epsilon, epsilon ** (1 / 3) / 2**18)
    for size, which in sorted({(16 * epsilon, 0), (larger, 0), (larger * (1 + 5**0.5) / 2, 1)}):
        directions = first if which == 0 else direction()
        rows = []
        for k in range(PROBE_POSITIONS):
            # np.asarray again: a 0-d input plus a 0-d move is a NumPy scalar, not an array.
            moved = [
                np.asarray(np.asarray(x, dtype=np.float64) + k * size * d)
                for x, d in zip(points, directions, strict=True)
            ]
            rows.append(np.asarray(rows_at(moved), dtype=np.float64))
        values = np.stack(rows, axis=1)
        finite = np.all(np.isfinite(values), axis=1)
        read = numdiff.estimate_noise_rows(values[finite])
        # Stairs the probe crossed: levels and whole jumps far above the value's own rounding (round(x, 3):
        # one jump of 1e-3, flat elsewhere), which ECnoise reads as noise (sigma ~ q / 6).
        level = entry_quanta(values[finite], floor[finite])
        # Jumps between values that move smoothly (a staircase times a smooth function): the noise is read
        # without them, and the jump is the row's stairs.
        clean, jump = probe_jumps(values[finite], floor[finite])
        smooth_between = (level == 0) & np.isfinite(clean)
        sigma[finite] = np.maximum(sigma[finite], np.where(smooth_between, clean, read))
        grid[finite] = np.maximum(grid[finite], np.where(smooth_between, jump, level))
    # Never below the rounding of the row's own value (a row the probe did not move at all).
    return ProbedRows(np.maximum(sigma, floor)[:, None], grid[:, None])


def default_steps(point: Any, eps: float | None, *, epsilon: float, output_epsilon: float) -> F64:
    """The check's step per element of a flat input ``point`` (in its own dtype): ``eps`` where given, else
    ``cbrt(max(epsilon, output_epsilon)) x max(1, |x_i|)``, exactly representable (an element that is not finite
    gets the step of 0, which it never takes).

    Examples
    --------
    >>> h = default_steps(np.array([0.5, 8.0]), None, epsilon=2.0**-52, output_epsilon=2.0**-52)
    >>> [f"{v:.3g}" for v in h], default_steps(np.ones(2), 1e-3, epsilon=2.0**-52, output_epsilon=2.0**-23).tolist()
    (['6.06e-06', '4.84e-05'], [0.001, 0.001])
    """
    point = np.asarray(point)
    if eps is not None:
        return np.full(point.size, float(eps))
    base = max(epsilon, output_epsilon) ** (1.0 / 3.0)
    finite = np.where(np.isfinite(point), point, 0).astype(point.dtype)
    out: F64 = numdiff.step_size(finite.reshape(-1), eps=base).astype(np.float64)
    return out


def row_grids(blocks: Sequence[Block], sigma: Any) -> tuple[F64, NDArray[np.int_]]:
    """Each output row's grid, from what every input's first look shows (:mod:`preflight.check.quanta`): a level
    in one of its entries, or whole multiples shared by several; a row is one output element, whichever input
    moves it. Returns ``(quantum (R,), showing (R,))``: the grid (0 where none) and how many entries show it.

    Examples
    --------
    >>> from preflight.check.jacobian import Columns
    >>> q, f0 = 2.0**-20, np.zeros((1, 1))
    >>> values = {s: np.array([[q * np.round(s * 0.3)]]) for s in (-2.0, -1.0, 1.0, 2.0)}
    >>> positions = {s: np.array([s * 1e-3]) for s in values}
    >>> columns = Columns(f0, np.full((1, 1), 1e-12), 2.0**-23, 1, None, values, positions)  # type: ignore[arg-type]
    >>> block = Block("x", (1,), columns, np.arange(1), np.full(1, 1e-3), None, [])  # type: ignore[arg-type]
    >>> quantum, showing = row_grids([block], columns.sigma)
    >>> quantum.tolist() == [q], showing.tolist()
    (True, [1])
    """
    stacks = [first_look(block) for block in blocks]
    entries = [entry_quanta(values, sigma) for values in stacks]
    levels = row_quanta(*entries)
    shared = shared_quanta(np.concatenate(stacks, axis=1), sigma)
    use_shared = (shared > 0) & ((levels == 0) | (shared < levels))
    quantum = np.where(use_shared, shared, levels)
    # How many entries show it, per row, in every input's block (a grid the entries share: all of them).
    shown = sum((showing_quanta(quantum, e).sum(axis=1) for e in entries), np.zeros(len(quantum), int))
    showing = np.where(use_shared, sum(e.shape[1] for e in entries), shown)
    return quantum, showing
