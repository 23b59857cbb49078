"""The closer look with its kinks located (issue #12): the loss along one coordinate, sampled at the 60 positions of
the closer look, with float-like noise; the analytic value under test is the slope of the piece the point lies on.

- a kink closer to the point than the grid resolves bends every window across it by half its jump: the correct
  side's slope is not failed;
- a smooth line whose slope disagrees is failed, however close the first difference came;
- a wrong value beside a kink is *off* every slope the point's piece could have: the second look's excuse is
  overruled;
- two kinks crowding the point (a piece shorter than the grid resolves) leave its slope unread: set aside, never
  failed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from preflight.check.dense import GRID, closer_look
from preflight.check.hinges import hinge_fit

H, SIGMA = 1e-2, 1e-7
UNIT = SIGMA / H  # the noise unit of a slope, sigma / h
SEEDS = range(8)


def relu(x: np.ndarray, at: float) -> np.ndarray:
    return np.maximum(x - at * H, 0.0)


def sampled(
    f: Callable[[np.ndarray], np.ndarray], seed: int
) -> tuple[dict[float, np.ndarray], dict[float, np.ndarray]]:
    """Values and moves at 0 and every GRID position, one row, with Gaussian noise of SIGMA."""
    rng = np.random.default_rng(seed)
    positions = {k: np.array([k * H]) for k in (0.0, *GRID)}
    values = {k: f(x) + (rng.normal(0.0, SIGMA, 1) if k else 0.0) for k, x in positions.items()}
    return values, positions


def look(f: Callable[[np.ndarray], np.ndarray], analytic: float, seed: int) -> tuple[bool, bool, bool]:
    """(failed, set aside as a kink, off every slope the point's piece could have)."""
    values, positions = sampled(f, seed)
    out = closer_look(values, positions, np.array([H]), np.array([analytic]), np.zeros(1), SIGMA)
    failed = bool(~out.kink[0] & (abs(analytic - out.numeric[0]) > out.tolerance[0]))
    return failed, bool(out.kink[0]), bool(out.off[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_a_kink_closer_to_the_point_than_the_grid_resolves_is_not_failed(seed: int) -> None:
    # 0.3 x + x^2, and a kink of 14 sigma / h at 0.012 h (between the point and the first grid position, h/64): the
    # point lies on the left piece, whose slope 0.3 autograd returns; every window across the point reads ~7 off.
    def f(x: np.ndarray) -> np.ndarray:
        return 0.3 * x + x**2 + 14 * UNIT * relu(x, 0.012)

    failed, _, off = look(f, 0.3, seed)
    assert not failed and not off


@pytest.mark.parametrize("seed", SEEDS)
def test_a_smooth_line_whose_slope_disagrees_is_failed(seed: int) -> None:
    def f(x: np.ndarray) -> np.ndarray:
        return 0.3 * x + x**2

    failed, kink, off = look(f, 0.3 + 12 * UNIT, seed)  # inside the first tolerance of 10 sigma / h's neighbour
    assert failed and not kink and off
    assert look(f, 0.3, seed) == (False, False, False)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_wrong_value_beside_a_kink_is_off_every_slope_the_point_could_have(seed: int) -> None:
    # kinks of 20 sigma / h at 0.3 h and -0.7 h; the analytic value forgets 40 sigma / h (a zeroed element)
    def f(x: np.ndarray) -> np.ndarray:
        return (0.3 + 40 * UNIT) * x + x**2 + 20 * UNIT * (relu(x, 0.3) + relu(-x, 0.7))

    failed, kink, off = look(f, 0.3, seed)
    assert failed and not kink and off
    assert look(f, 0.3 + 40 * UNIT, seed)[2] is False  # the right value is not off


@pytest.mark.parametrize("seed", SEEDS)
def test_two_kinks_crowding_the_point_leave_its_slope_unread_and_set_aside(seed: int) -> None:
    # kinks at -0.05 h (+20 sigma / h) and +0.01 h (-12 sigma / h): the point's piece is 0.06 h long (four grid
    # steps), its slope 20 sigma / h above the far left one and 12 above the far right one: outside both sides
    def f(x: np.ndarray) -> np.ndarray:
        return 0.3 * x + x**2 + 20 * UNIT * relu(-x, 0.05) * -1 - 12 * UNIT * relu(x, 0.01)

    failed, kink, off = look(f, 0.3, seed)
    assert not failed and not off
    assert kink


def test_the_fit_locates_a_kink_and_reads_each_side_of_one_at_the_point() -> None:
    rows = 3
    positions = {k: np.full(rows, k * H) for k in (0.0, *GRID)}
    x = positions
    values = {
        k: np.array([abs(v[0]), 0.5 * v[1] + 30 * UNIT * max(v[1] - 0.4 * H, 0.0), v[2] ** 2]) for k, v in x.items()
    }
    fit = hinge_fit(values, positions, np.full(rows, H), SIGMA)
    assert fit.fits.all()
    assert fit.seen.tolist() == [True, True, False]
    assert np.allclose(fit.low, [-1.0, 0.5, 0.0], atol=1e-9) and np.allclose(fit.high, [1.0, 0.5, 0.0], atol=1e-9)
    assert fit.near.tolist() == [True, False, False]  # the hinge at 0.4 h is beyond NEAR
