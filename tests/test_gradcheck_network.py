"""The checker on the reference network: every planted bug caught and named, no false alarm on correct networks."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from preflight import gradcheck
from preflight.nn import Network
from preflight.nn.activations import ACTIVATIONS
from preflight.nn.bugs import BUGS, BuggyNetwork, broken_tensors
from preflight.nn.heads import HEADS

from .oracle import network_problem

DTYPES = [np.float64, np.float32]


def problem(net: Network, dtype: Any, seed: int, m: int = 16) -> tuple[dict[str, np.ndarray], np.ndarray, Any, Any]:
    return network_problem(net, dtype, seed, m, init="he")


def check(net: Network, params: Any, X: Any, y: Any, masks: Any = None, **options: Any) -> Any:
    return gradcheck(
        lambda p: net.cost(p, X, y, masks=masks), params, lambda p: net.gradients(p, X, y, masks=masks), **options
    )


def buggy(bug: str, hidden: str = "tanh") -> BuggyNetwork:
    return BuggyNetwork(
        [4, 5, 5, 3],  # a square layer (5 x 5) for the transposed gradient
        hidden=hidden,
        output="softmax",
        l2=0.7 if bug == "missing-l2" else 0.0,
        keep_prob=0.8 if bug == "dropout-backward" else 1.0,
        bug=bug,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", ["tanh", "relu"])
@pytest.mark.parametrize("bug", sorted(BUGS))
def test_every_planted_bug_is_caught_and_located(bug: str, hidden: str, dtype: Any) -> None:
    net = buggy(bug, hidden)
    for seed in range(3):
        report = check(net, *problem(net, dtype, seed))
        assert not report.passed, f"{bug} missed (seed {seed})"
        assert report.worst in broken_tensors(net, bug)
        failing = {n for n, r in report.parameters.items() if not r.passed}
        assert failing <= broken_tensors(net, bug) | {"W1", "b1"}  # upstream tensors may be reached


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("bug", "hint"),
    [
        ("factor-2", "W2: analytic = 2.00 x numeric"),
        ("bias-no-1/m", "b1: analytic = 16.00 x numeric (a missing 1/m with m = 16?)"),
        ("sign", "W3: analytic = -1.00 x numeric: a sign flip"),
        ("missing-l2", "the L2 term is missing from the gradient"),
        ("transposed", "W2: the analytic gradient is the transpose of the numeric one"),
        ("missing-1/m-output", "every tensor is off by the same factor: analytic = 16.00 x numeric"),
        ("one-element", "W1: only 1 of 20 coordinates are off (W1[0, 1]): a single wrong element"),
    ],
)
def test_the_hint_names_the_kind_of_bug(bug: str, hint: str, dtype: Any) -> None:
    net = buggy(bug)
    report = check(net, *problem(net, dtype, 0))
    assert any(hint in h for h in report.hints), report.hints


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_course_n_dimensional_exercise_flags_both_tensors_with_their_factors(dtype: Any) -> None:
    # The course's gradient-checking exercise: a 3-layer relu-relu-sigmoid network whose backprop doubles dW2
    # and multiplies db1 by 4.
    net = BuggyNetwork([4, 5, 3, 1], hidden="relu", output="sigmoid", bug="course")
    rng = np.random.default_rng(1)
    params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(dtype) for k, v in net.init(1).items()}
    X, y = rng.standard_normal((3, 4)), np.array([1, 1, 0])
    report = check(net, params, X, y)
    assert {n for n, r in report.parameters.items() if not r.passed} == {"W2", "b1"}
    assert "W2: analytic = 2.00 x numeric" in report.hints
    assert "b1: analytic = 4.00 x numeric" in report.hints


CORRECT = list(itertools.product(sorted(ACTIVATIONS), sorted(HEADS), DTYPES))


@pytest.mark.slow
@pytest.mark.parametrize(("hidden", "output", "dtype"), CORRECT)
def test_correct_networks_give_no_false_alarm(hidden: str, output: str, dtype: Any) -> None:
    for seed in range(20):
        # Every seed varies L2 and frozen dropout too: plain, L2, dropout, both.
        net = Network(
            [4, 6, 5, 3], hidden=hidden, output=output, l2=0.5 * (seed % 2), keep_prob=(1.0, 0.7)[seed % 4 > 1]
        )
        report = check(net, *problem(net, dtype, seed, m=12))
        assert report.passed, f"seed {seed}: {report.worst} {report.parameters[report.worst or ''].worst[:1]}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_with_pre_activations_near_zero_gives_no_false_alarm(dtype: Any) -> None:
    net = Network([3, 8, 8, 1], hidden="relu", output="sigmoid", l2=0.1)
    rng = np.random.default_rng(3)
    kinks = 0
    for seed in range(10):
        params, X, y, _ = problem(net, dtype, seed, m=32)
        # Shift every first-layer bias so one sample sits within 1e-3 of each unit's kink (inside the float32 step).
        z = X.astype(dtype) @ params["W1"].T
        params["b1"] = (-z[rng.integers(0, 32, 8), np.arange(8)] + 1e-3 * rng.uniform(-1, 1, 8)).astype(dtype)
        report = check(net, params, X, y)
        assert report.passed, f"seed {seed}: {report.worst} {report.parameters[report.worst or ''].worst[:1]}"
        kinks += len(report.kinks)
    if dtype == np.float32:
        assert kinks > 0  # the float32 step (~5e-3) does straddle some of those kinks, and they were set aside


def test_with_frozen_masks_the_dropout_backward_pass_is_checked_for_real() -> None:
    net = Network([4, 6, 5, 3], hidden="tanh", output="softmax", keep_prob=0.6)
    params, X, y, masks = problem(net, np.float64, 0)
    assert check(net, params, X, y, masks).passed
    broken = BuggyNetwork([4, 6, 5, 3], hidden="tanh", output="softmax", keep_prob=0.6, bug="dropout-backward")
    assert not check(broken, params, X, y, masks).passed


@pytest.mark.slow
@pytest.mark.parametrize("hidden", ["relu", "leaky_relu"])
def test_a_wider_float32_relu_network_on_a_larger_batch_gives_no_false_alarm(hidden: str) -> None:
    # ~1,900 parameters and 128 samples: dozens of coordinates have a kink inside the float32 step.
    net = Network([16, 32, 32, 10], hidden=hidden, output="softmax")
    for seed in range(2):
        report = check(net, *problem(net, np.float32, seed, m=128))
        assert report.passed, f"seed {seed}: {report.worst} {report.parameters[report.worst or ''].worst[:1]}"
        assert report.kinks
