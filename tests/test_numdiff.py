"""Specification of preflight.numdiff: steps, the three formulas with honest error estimates, measured noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from preflight.check import numdiff


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["central", "forward", "richardson"])
def test_steps_are_exactly_representable_and_scale_with_magnitude(dtype: type, method: str) -> None:
    x = np.array([0.0, 1e-3, 0.7, -3.0, 1234.5, -1e6], dtype=dtype)
    h = numdiff.step_size(x, method=method)
    assert h.dtype == x.dtype and np.all(h > 0)
    assert np.array_equal((x + h) - x, h)
    eps = np.finfo(dtype).eps
    base = eps ** (1 / 2) if method == "forward" else eps ** (1 / 3)
    # Representability moves a step by at most a factor 2 (one binade) from base x max(1, |x|).
    ratio = h.astype(np.float64) / (base * np.maximum(1.0, np.abs(x.astype(np.float64))))
    assert np.all((ratio > 0.5) & (ratio < 2.0))


def test_eps_overrides_the_base_step() -> None:
    h = numdiff.step_size(np.array([0.5, 10.0]), eps=1e-4)
    assert np.allclose(h, [1e-4, 1e-3], rtol=1e-6)
    with pytest.raises(ValueError, match="eps: expected a positive finite step"):
        numdiff.step_size(np.array([1.0]), eps=-1.0)
    with pytest.raises(ValueError, match="x: expected a floating array"):
        numdiff.step_size(np.array([1, 2]))


def cubic_exp(v: np.ndarray) -> float:
    return float(np.sum(np.exp(v.astype(np.float64)) * np.sin(3 * v.astype(np.float64)) + v.astype(np.float64) ** 3))


def cubic_exp_gradient(v: np.ndarray) -> np.ndarray:
    x = v.astype(np.float64)
    return np.exp(x) * (np.sin(3 * x) + 3 * np.cos(3 * x)) + 3 * x**2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["central", "forward", "richardson"])
def test_every_formula_is_within_its_error_estimate(dtype: type, method: str) -> None:
    x = np.linspace(-1.5, 2.0, 9).astype(dtype)

    def f(v: np.ndarray) -> float:  # evaluated in the dtype, so float32 rounding is real
        return float(np.sum(np.exp(v) * np.sin(3 * v) + v**3, dtype=np.float64))

    estimate = numdiff.gradient(f, x, method=method)
    assert np.all(np.abs(estimate.value - cubic_exp_gradient(x)) <= estimate.error)


def test_orders_central_beats_forward_and_richardson_beats_central_in_float64() -> None:
    x = np.array([0.3, 1.1])
    errors = {
        m: np.abs(numdiff.gradient(cubic_exp, x, method=m).value - cubic_exp_gradient(x)).max()
        for m in ("forward", "central", "richardson")
    }
    # forward errs ~sqrt(eps) = 1e-8, central ~eps^(2/3) = 4e-11, Richardson below that.
    assert errors["forward"] > 10 * errors["central"] > 10 * errors["richardson"] * 0.1
    assert errors["central"] < 1e-9


def test_estimate_noise_recovers_a_known_noise_level() -> None:
    rng = np.random.default_rng(1)
    smooth = 3.0 + 1e-6 * np.arange(16) + 1e-9 * np.arange(16) ** 2  # 2nd differences 2e-9: ignored
    estimates = [numdiff.estimate_noise(smooth + 1e-10 * rng.standard_normal(16)) for _ in range(50)]
    # ECnoise on 16 points is unbiased within its spread: the median of 50 runs is within 30 % of the truth.
    assert 0.7e-10 < np.median(estimates) < 1.3e-10
    assert numdiff.estimate_noise(np.full(8, 2.0)) == 0.0


@pytest.mark.parametrize("scale", [1e-300, 1.0, 1e290])
def test_estimate_noise_neither_overflows_nor_underflows_at_extreme_scales(scale: float) -> None:
    # The same relative noise at any magnitude gives the same relative estimate: at 1e290 the squared
    # differences (1e560) would overflow float64 and at 1e-300 they would underflow to 0.
    rng = np.random.default_rng(2)
    values = scale * (1.0 + 1e-12 * rng.standard_normal(16))
    reference = numdiff.estimate_noise(1.0 + 1e-12 * np.random.default_rng(2).standard_normal(16))
    assert numdiff.estimate_noise(values) / scale == pytest.approx(reference, rel=1e-6)


def test_noise_at_measures_float32_rounding_and_restores_x() -> None:
    x = np.linspace(-1, 1, 200).astype(np.float32)
    before = x.copy()
    sigma = numdiff.noise_at(lambda v: float(np.sum(np.tanh(v) ** 2)), x)
    # Summing 200 float32 squares: rounding of a few eps_32 x |f| (|f| ~ 70), far above float64's.
    assert 1e-7 * 70 / 10 < sigma < 1e-7 * 70 * 100
    assert np.array_equal(x, before)


def test_central_estimate_covers_an_oracle_derivative() -> None:
    x, h = 0.4, np.array([1e-4, 1e-3, 1e-2])
    e = numdiff.central(np.sin(x), np.sin(x + h), np.sin(x - h), h, noise=1e-16)
    assert np.all(np.abs(e.value - np.cos(x)) <= e.error)


def test_experiment_shows_first_and_second_order_and_the_best_steps(tmp_path: Path) -> None:
    from preflight.experiments.numdiff import run

    result = run()  # 27 steps, two per decade
    for curve in result.curves:
        # Truncation regime: one-sided O(h), two-sided O(h^2) (fitted slopes within 0.2 of 1 and 2).
        assert abs(curve.slope_forward - 1) < 0.2 and abs(curve.slope_central - 2) < 0.2
        eps = np.finfo(curve.dtype).eps
        # Best steps within a factor 30 of the textbook sqrt(eps) and cbrt(eps) (the error curve is flat near them).
        assert abs(np.log10(curve.best_forward / eps**0.5)) <= 1.5
        assert abs(np.log10(curve.best_central / eps ** (1 / 3))) <= 1.5
    assert "two-sided" in str(result) and json.loads(result.to_json()) == json.loads(json.dumps(result.to_dict()))
    pytest.importorskip("matplotlib")
    assert [p.name for p in result.plot(tmp_path)] == ["numdiff.png"]


def test_experiment_runs_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from preflight.cli import main

    assert main(["experiment", "numdiff", "--points", "6", "--json"]) == 0
    assert {c["dtype"] for c in json.loads(capsys.readouterr().out)["curves"]} == {"float64", "float32"}


@pytest.mark.parametrize(
    ("f", "x", "true"),
    [
        (np.tanh, 0.0, 1.0),  # odd function at 0: f'' = 0, f''' = -2
        (lambda v: v**3, 0.0, 0.0),  # f'' = 0, f''' = 6
        (np.sin, np.pi, -1.0),  # an inflection point away from 0
        (np.exp, 0.5, np.exp(0.5)),  # an ordinary point
    ],
    ids=["tanh at 0", "cube at 0", "sin at pi", "exp"],
)
def test_the_central_error_estimate_covers_the_true_error_at_inflection_points(f, x: float, true: float) -> None:
    # The curvature term |f(x+h) - 2f(x) + f(x-h)| / 6h is 0 where f'' = 0; the true truncation h^2 f'''/6 is not.
    estimate = numdiff.gradient(lambda v: float(np.sum(f(v))), np.array([x]))
    assert abs(estimate.value[0] - true) <= estimate.error[0]


@pytest.mark.parametrize("noise", [-1.0, float("nan"), float("inf"), "x"])
def test_a_bad_noise_bound_is_refused_by_name(noise: object) -> None:
    with pytest.raises(ValueError, match=r"^noise: expected a number in \[0.0, inf\)"):
        numdiff.gradient(lambda v: float(np.sum(v**2)), np.ones(2), noise=noise)  # type: ignore[arg-type]
