"""Specification of the gradient checker on any loss: contract, verdict, report, bad input, the caller's arrays."""

from __future__ import annotations

import copy
import io
import json
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from preflight import gradcheck
from preflight._util.progress import should_show_progress
from preflight.check.engine import COURSE_THRESHOLDS, BlackBoxLoss, NondeterministicLossError
from preflight.check.tree import flatten


def cubic(p: Any) -> float:
    return float(np.sum(p["w"] ** 3) + np.sum(np.sin(p["layers"][0]["v"])) * np.sum(p["layers"][1] ** 2))


def cubic_grads(p: Any) -> dict[str, Any]:
    v, u = p["layers"][0]["v"], p["layers"][1]
    return {"w": 3 * p["w"] ** 2, "layers": [{"v": np.cos(v) * np.sum(u**2)}, 2 * u * np.sum(np.sin(v))]}


def nested(dtype: Any = np.float64, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "w": rng.standard_normal((3, 4)).astype(dtype),
        "layers": [{"v": rng.standard_normal(5).astype(dtype)}, rng.standard_normal((2, 2)).astype(dtype)],
    }


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_correct_gradient_passes_with_dotted_names(dtype: Any) -> None:
    report = gradcheck(cubic, nested(dtype), cubic_grads)
    assert report.passed
    assert list(report.parameters) == ["w", "layers.0.v", "layers.1"]
    assert all(r.passed and r.checked == r.size for r in report.parameters.values())
    # The course's metric is reported beside the calibrated verdict (float64: ~1e-10; float32: ~1e-4).
    assert report.difference < (1e-8 if dtype == np.float64 else 1e-3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_wrong_tensor_fails_and_is_named_with_its_factor(dtype: Any) -> None:
    def wrong(p: Any) -> dict[str, Any]:
        g = cubic_grads(p)
        g["layers"][0]["v"] = 3 * g["layers"][0]["v"]
        return g

    report = gradcheck(cubic, nested(dtype), wrong)
    assert not report.passed
    assert report.worst == "layers.0.v"
    assert [name for name, r in report.parameters.items() if not r.passed] == ["layers.0.v"]
    assert "layers.0.v: analytic = 3.00 x numeric" in report.hints
    worst = report.parameters["layers.0.v"].worst[0]
    assert worst.discrepancy > worst.tolerance and len(worst.index) == 1


def test_the_callers_arrays_are_bit_identical_afterwards() -> None:
    params = nested(np.float32)
    before = {k: repr(v) for k, v in [("w", params["w"].tobytes()), ("v", params["layers"][0]["v"].tobytes())]}
    gradcheck(cubic, params, cubic_grads, method="richardson")
    assert repr(params["w"].tobytes()) == before["w"] and repr(params["layers"][0]["v"].tobytes()) == before["v"]


@pytest.mark.parametrize("fail_at", [1, 3, 20, 40])
def test_the_callers_arrays_are_bit_identical_when_the_loss_raises(fail_at: int) -> None:
    params = nested()
    saved = [params["w"].copy(), params["layers"][0]["v"].copy(), params["layers"][1].copy()]
    calls = 0

    def flaky(p: Any) -> float:
        nonlocal calls
        calls += 1
        if calls == fail_at:
            raise RuntimeError("disk full")
        return cubic(p)

    with pytest.raises(RuntimeError, match="disk full"):
        gradcheck(flaky, params, cubic_grads)
    for now, then in zip([params["w"], params["layers"][0]["v"], params["layers"][1]], saved, strict=True):
        assert now.tobytes() == then.tobytes()


def test_no_copy_of_the_parameters_per_coordinate() -> None:
    w = np.arange(6.0)
    seen: list[bool] = []
    BlackBoxLoss(lambda p: seen.append(p["w"] is w) or 0.0, {"w": w}, {"w": w})({"w": np.full(6, 1e-3)})
    assert seen and all(seen)


def test_a_random_loss_stops_the_check_and_says_how_to_freeze_it() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(NondeterministicLossError, match=r"random \(dropout on\?.*dropout_masks"):
        gradcheck(lambda p: float(np.sum(p["w"] * rng.random(3))), {"w": np.ones(3)}, {"w": np.ones(3)})


SHARED = np.ones(3)


@pytest.mark.parametrize(
    ("loss", "params", "grads", "message"),
    [
        (lambda p: np.ones(2), {"w": np.ones(2)}, {"w": np.ones(2)}, r"loss: expected a scalar, got array of shape"),
        (lambda p: float("inf"), {"w": np.ones(2)}, {"w": np.ones(2)}, r"loss: expected a finite value, got inf"),
        (lambda p: 0.0, {"w": np.ones(2)}, {"w": np.ones(3)}, r"grads\['w'\]: expected shape \(2,\)"),
        (lambda p: 0.0, {"w": np.ones(2)}, {"v": np.ones(2)}, r"grads: expected the structure of params; missing"),
        (lambda p: 0.0, {"w": np.arange(3)}, {"w": np.ones(3)}, r"params\['w'\]: expected a floating dtype, got int"),
        (lambda p: 0.0, {"w": [1.0, 2.0]}, {"w": [1.0, 2.0]}, r"params\['w.0'\]: expected a NumPy array"),
        (lambda p: 0.0, {"w": np.ones(2)}, {"w": np.array([1.0, np.nan])}, r"grads\['w'\]: expected finite"),
        (lambda p: 0.0, {"w": SHARED, "v": SHARED[1:]}, {"w": SHARED, "v": SHARED[1:]}, r"shares memory with"),
        # NaN in the parameters is the parameters' fault, not the gradient's that it spoils
        (lambda p: 0.0, {"w": np.array([1.0, np.nan])}, {"w": np.ones(2)}, r"params\['w'\]: expected finite.*w\[1\]"),
        (lambda p: 0.0, {"w": np.ones(2, complex)}, {"w": np.ones(2)}, r"got complex128: check complex parameters as"),
        (lambda p: 0.0, {"w": np.array([None, 1.0])}, {"w": np.ones(2)}, r"got object: only real floating-point"),
        (3.0, {"w": np.ones(2)}, {"w": np.ones(2)}, r"loss: expected a callable loss\(params\) -> float, got 3\.0"),
        (lambda p: 1 + 1j, {"w": np.ones(2)}, {"w": np.ones(2)}, r"loss: expected a real scalar, got the complex"),
    ],
)
def test_bad_input_gets_a_value_error_naming_the_entry(loss: Any, params: Any, grads: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gradcheck(loss, params, grads)


def test_a_loss_that_turns_non_finite_under_a_perturbation_names_the_coordinate() -> None:
    def log_loss(p: Any) -> float:
        return float(np.sum(np.log(p["w"])))

    with np.errstate(invalid="ignore"), pytest.raises(ValueError, match=r"expected a finite value, got nan at w\[1\]"):
        gradcheck(log_loss, {"w": np.array([1.0, 1e-4])}, {"w": np.ones(2)}, eps=1e-3)


def test_report_table_and_json() -> None:
    report = gradcheck(cubic, nested(), cubic_grads)
    text = str(report)
    assert text.startswith("Gradient check: PASSED (float64, central differences, 21 coordinates")
    assert "course thresholds" in text and "layers.0.v" in text
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is True and data["course_thresholds"] == list(COURSE_THRESHOLDS)
    assert set(data["parameters"]) == {"w", "layers.0.v", "layers.1"}


@pytest.mark.parametrize("method", ["central", "forward", "richardson"])
def test_every_method_passes_a_correct_gradient_and_fails_a_wrong_one(method: str) -> None:
    assert gradcheck(cubic, nested(), cubic_grads, method=method).passed
    wrong = gradcheck(cubic, nested(), lambda p: {**cubic_grads(p), "w": -cubic_grads(p)["w"]}, method=method)
    assert not wrong.passed and wrong.worst == "w"
    assert "w: analytic = -1.00 x numeric: a sign flip" in wrong.hints


def test_kink_at_the_point_is_set_aside_not_failed() -> None:
    # |x| at x = 0: the one-sided slopes are -1 and +1 and the central difference 0; the analytic 1 (the
    # subgradient a ReLU-style derivative picks) is between the slopes: a kink, not a bug.
    params = {"x": np.array([0.0, 0.5, -2.0])}
    report = gradcheck(
        lambda p: float(np.sum(np.abs(p["x"]))), params, lambda p: {"x": np.where(p["x"] >= 0, 1.0, -1.0)}
    )
    assert report.passed
    assert [c.index for _, c in report.kinks] == [(0,)]


def test_kink_within_the_step_in_float32_is_set_aside() -> None:
    x = np.array([1e-3, -0.3, 0.2], dtype=np.float32)  # ReLU kink 1e-3 away: inside the float32 step (~5e-3)
    report = gradcheck(
        lambda p: float(np.sum(np.maximum(p["x"], 0) ** 2 + np.maximum(p["x"], 0))),
        {"x": x},
        lambda p: {"x": (2 * np.maximum(p["x"], 0) + (p["x"] > 0)).astype(np.float32)},
    )
    assert report.passed and len(report.kinks) == 1


def test_sampling_covers_every_tensor_and_reports_the_chance_of_a_catch() -> None:
    rng = np.random.default_rng(0)
    params = {"big": rng.standard_normal(2000), "small": rng.standard_normal(5)}
    report = gradcheck(lambda p: float(np.sum(p["big"] ** 2) + np.sum(p["small"] ** 4)), params,
                       lambda p: {"big": 2 * p["big"], "small": 4 * p["small"] ** 3}, sample=0.05)  # fmt: skip
    assert report.passed and report.sampled
    assert report.parameters["big"].checked == 100 and report.parameters["small"].checked == 5
    # 100 of 2000 coordinates: an error on 1 % (20 coordinates) is missed with probability ~(0.95)^20 = 0.36.
    assert report.detection[0.01] == pytest.approx(1 - 0.358, abs=0.01)
    assert report.detection[0.1] > 0.99


def test_a_sample_still_finds_an_error_on_a_large_fraction() -> None:
    params = {"w": np.linspace(-1, 1, 3000)}
    report = gradcheck(lambda p: float(np.sum(p["w"] ** 2)), params, lambda p: {"w": 2.5 * p["w"]}, sample=50)
    assert not report.passed and report.parameters["w"].checked == 50


def test_directional_screen_zooms_in_on_the_offending_tensor() -> None:
    rng = np.random.default_rng(1)
    params = {name: rng.standard_normal((6, 6)) for name in ("a", "b", "c")}

    def loss(p: Mapping[str, Any]) -> float:
        return float(np.sum(np.tanh(p["a"] @ p["b"]) * p["c"]))

    def grads(p: Mapping[str, Any], bug: bool) -> dict[str, Any]:
        t = np.tanh(p["a"] @ p["b"])
        dz = (1 - t**2) * p["c"]
        return {"a": dz @ p["b"].T, "b": p["a"].T @ dz * (1.5 if bug else 1.0), "c": t}

    ok = gradcheck(loss, params, lambda p: grads(p, False), screen=True)
    assert ok.passed and ok.evaluations < 50 and sum(r.checked for r in ok.parameters.values()) == 0
    bad = gradcheck(loss, params, lambda p: grads(p, True), screen=True)
    assert not bad.passed and bad.worst == "b"
    assert {n for n, r in bad.parameters.items() if r.checked} == {"b"}


def test_a_pluggable_evaluator_is_used_for_perturbed_losses() -> None:
    params = nested()
    calls: list[set[str]] = []

    def evaluator(offsets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """All perturbed losses of each tensor at once, from a private copy (the shape of network_check)."""
        calls.append(set(offsets))
        out = {}
        for name, offset in offsets.items():
            values = np.full(offset.shape, cubic(params))
            for idx in zip(*np.nonzero(offset), strict=True):
                moved = copy.deepcopy(params)
                dict(flatten(moved))[name][idx] += offset[idx]
                values[idx] = cubic(moved)
            out[name] = values
        return out

    report = gradcheck(cubic, params, cubic_grads, evaluator=evaluator)
    assert report.passed and calls[0] == {"w", "layers.0.v", "layers.1"}
    wrong = gradcheck(cubic, params, lambda p: {**cubic_grads(p), "w": 0 * p["w"]}, evaluator=evaluator)
    assert not wrong.passed and wrong.worst == "w"
    assert wrong.evaluations >= 2 * 21


def test_an_evaluator_returning_the_wrong_shape_is_named() -> None:
    with pytest.raises(ValueError, match="evaluator: expected finite losses of shape"):
        gradcheck(cubic, nested(), cubic_grads, evaluator=lambda offsets: {n: np.zeros(1) for n in offsets})


def test_non_contiguous_and_scalar_parameters_are_perturbed_and_restored() -> None:
    one, two = np.arange(1.0, 13.0).reshape(3, 4), np.arange(1.0, 13.0).reshape(3, 4)
    params = {"t": one.T, "s": two[::2, 1:3], "c": np.array(0.5)}  # a transpose, a strided slice, a 0-d array
    saved = {k: v.copy() for k, v in params.items()}

    def loss(p: Any) -> float:
        return float(np.sum(p["t"] ** 2) + np.sum(np.sin(p["s"])) + p["c"] ** 3)

    report = gradcheck(loss, params, lambda p: {"t": 2 * p["t"], "s": np.cos(p["s"]), "c": 3 * p["c"] ** 2})
    assert report.passed and report.parameters["c"].checked == 1
    assert all(np.array_equal(params[k], saved[k]) for k in params)


def test_zero_where_the_loss_depends_and_the_converse_are_named() -> None:
    params = {"w": np.linspace(0.5, 2.0, 8)}

    def loss(p: Any) -> float:
        return float(np.sum(p["w"][:4] ** 2))  # the last four entries do not matter

    missing = gradcheck(loss, params, lambda p: {"w": np.zeros(8)})
    assert any("exactly 0 at 4 coordinates where the loss does depend" in h for h in missing.hints)
    spurious = gradcheck(loss, params, lambda p: {"w": 2 * p["w"]})
    assert any("nonzero at 4 coordinates the loss does not depend on" in h for h in spurious.hints)


def test_progress_bar_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    gradcheck(cubic, nested(), cubic_grads, progress=True)
    assert "gradcheck" in capsys.readouterr().err
    gradcheck(cubic, nested(), cubic_grads)  # a check this short shows no bar by default
    assert "gradcheck" not in capsys.readouterr().err


class _Terminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_by_default_a_bar_shows_for_long_checks_on_a_terminal_only(tty: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # In a CI log or a pipe a progress bar is noise; asked for explicitly, it shows anyway.
    monkeypatch.setattr(sys, "stderr", _Terminal(tty))
    assert should_show_progress(None, 60.0) is tty
    assert should_show_progress(None, 0.5) is False
    assert should_show_progress(True, 0.0) is True and should_show_progress(False, 60.0) is False


@pytest.mark.parametrize("screen", [-1, 0, 2.5, "yes", None])
def test_screen_is_a_flag_or_a_positive_number_of_directions(screen: Any) -> None:
    # A screen of -1 directions once checked nothing and reported PASSED: a check that cannot fail.
    w = np.linspace(0.5, 2.0, 50)
    with pytest.raises(ValueError, match=r"screen: expected True, False or a number of directions >= 1, got"):
        gradcheck(lambda p: float(np.sum(p["w"] ** 3)), {"w": w}, {"w": 6 * w**2}, screen=screen)


def test_huge_parameters_keep_a_finite_noise_estimate_and_still_catch_a_bug() -> None:
    # sum(x^2) at x = 1e150 is 3e300, finite; the squares of its differences are not. An infinite noise estimate
    # used to excuse any gradient (a factor 1.5 passed).
    x = np.full(3, 1e150)
    wrong = gradcheck(lambda p: float(np.sum(p["x"] ** 2)), {"x": x}, lambda p: {"x": 3 * p["x"]})
    assert np.isfinite(wrong.noise) and not wrong.passed
    assert wrong.hints == ["x: analytic = 1.50 x numeric"]
    assert gradcheck(lambda p: float(np.sum(p["x"] ** 2)), {"x": x}, lambda p: {"x": 2 * p["x"]}).passed


def test_an_exactly_constant_loss_passes_a_zero_gradient_without_warnings() -> None:
    # No rounding noise at all: the tolerance is 0, and an exact match is no 0/0.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = gradcheck(lambda p: 0.0, {"w": np.ones(3)}, {"w": np.zeros(3)})
    assert report.passed and report.parameters["w"].significance == 0.0
    assert not gradcheck(lambda p: 0.0, {"w": np.ones(3)}, {"w": np.ones(3)}).passed


def test_the_text_report_lists_only_failing_coordinates_under_a_failure() -> None:
    w = np.linspace(0.5, 2.0, 6)
    grad = 3 * w**2
    grad[4] *= 2  # one wrong coordinate among six
    text = str(gradcheck(lambda p: float(np.sum(p["w"] ** 3)), {"w": w}, {"w": grad}))
    listed = text.split("worst failing coordinates:")[1].split("\n\n")[0].strip().splitlines()
    assert [line.split(":")[0].strip() for line in listed] == ["w[4]"]
