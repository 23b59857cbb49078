"""The pooled look (preflight.check.pooled): in float32, a passing tensor's coordinates moved together along its
analytic gradient, where each coordinate alone resolves too little (issue #12: every float32 bug >= 1e-3 caught).

A scale error of 2e-3 in dW1 or 1e-2 in db1 of a learner's tanh network sits inside every coordinate's float32
tolerance; along the gradient it adds up over the tensor's coordinates and fails, named. Correct networks pass, ReLU
networks whose checks set kinks aside get no pooled look (moved together, a layer's coordinates cross kinks no
coordinate crosses alone), and neither do float64 or sampled checks.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from preflight import gradcheck
from preflight.check.pooled import pooled_look
from preflight.check.verdict import TensorCheck

from .numpy_nets import grads, loss, make

SMALL = ((12, 16, 8, 1), 64)
LAM = 0.7


def check(act: str, bug: str, seed: int, dtype: str = "float32", pooled: bool = True, **options: object) -> object:
    dims, m = SMALL
    p, X, Y = make(seed, dims, m, dtype)
    g = grads(p, X, Y, act, LAM, bug)
    with mock.patch("preflight.check.engine.COARSE_EPSILON", 1e-10 if pooled else np.inf):
        return gradcheck(lambda q: loss(q, X, Y, act, LAM), p, g, **options)


def pooled_hints(report: object) -> list[str]:
    return [h for h in report.hints if "moved along its analytic gradient" in h]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("bug", "tensor"), [("constant-2e-3", "W1"), ("b1-scaled", "b1")])
@pytest.mark.parametrize("seed", range(3))
def test_a_scale_error_below_each_coordinate_fails_along_the_gradient(bug: str, tensor: str, seed: int) -> None:
    report = check("tanh", bug, seed)
    assert not report.passed and not report.parameters[tensor].passed  # type: ignore[attr-defined]
    failing = [n for n, r in report.parameters.items() if not r.passed]  # type: ignore[attr-defined]
    assert failing == [tensor]
    # Where the coordinates alone pass it, the pooled look is what fails it, and its hint names the tensor.
    if check("tanh", bug, seed, pooled=False).passed:  # type: ignore[attr-defined]
        assert [h.split(":")[0] for h in pooled_hints(report)] == [tensor]


@pytest.mark.parametrize("bug", ["constant-2e-3", "b1-scaled"])
def test_the_coordinates_alone_miss_those_scale_errors_at_some_seeds(bug: str) -> None:
    missed = [s for s in range(3) if check("tanh", bug, s, pooled=False).passed]  # type: ignore[attr-defined]
    assert missed, "the coordinates alone caught every seed: the test no longer shows what the pooled look adds"


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("seed", range(4))
def test_a_correct_network_passes_with_no_pooled_failure(act: str, seed: int) -> None:
    report = check(act, "", seed)
    assert report.passed, str(report)  # type: ignore[attr-defined]
    assert not pooled_hints(report)


def test_a_check_that_set_kinks_aside_gets_no_pooled_look() -> None:
    dims, m = (20, 32, 16, 1), 256
    p, X, Y = make(0, dims, m)
    g = grads(p, X, Y, "relu", LAM)
    calls = mock.MagicMock(wraps=pooled_look)
    with mock.patch("preflight.check.engine.pooled_look", calls):
        report = gradcheck(lambda q: loss(q, X, Y, "relu", LAM), p, g)
    assert report.kinks and report.passed
    calls.assert_not_called()


@pytest.mark.parametrize("options", [{"dtype": "float64"}, {"sample": 0.5}])
def test_float64_and_sampled_checks_get_no_pooled_look(options: dict[str, object]) -> None:
    dtype = str(options.pop("dtype", "float32"))
    calls = mock.MagicMock(wraps=pooled_look)
    with mock.patch("preflight.check.engine.pooled_look", calls):
        check("tanh", "", 0, dtype=dtype, **options)
    calls.assert_not_called()


def test_the_pooled_look_sets_a_direction_with_a_kink_at_the_point_aside() -> None:
    # |w| summed: a kink at 0 in every coordinate; autograd's subgradient 0 there is not an error.
    w = np.zeros(32, dtype=np.float32)
    value = lambda: float(np.sum(np.abs(w)))  # noqa: E731
    t = TensorCheck("w", w, np.arange(0), np.full(32, 0.5))  # any value between the sides, -1 and 1
    assert pooled_look(t, {"w": w}, value, value(), 1e-7) is None
    assert np.all(w == 0)  # restored
