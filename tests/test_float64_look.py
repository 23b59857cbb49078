"""The float64 look at a float32 NumPy check's failures (preflight.check.float64_look; issue #12: no false alarm on a
correct float32 network).

At seed 14, the float32 ReLU network 20-32-16-1 at batch 256 has two second-layer units 0.01 h and 0.04 h from their
kinks on either side of the point, for several first-layer weights: float32 differences read the slope outside them
and fail coordinates whose backward is right. The same loss at float64 copies of the parameters reads the slope
between them, and clears those failures; it never clears a bug, nor anything where the loss casts to float32.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
import pytest

from preflight import gradcheck

from .numpy_nets import grads, loss, make

NET = ((20, 32, 16, 1), 256)
CROWDED = 14  # the seed whose correct network float32 differences alone fail


def check(bug: str = "", seed: int = CROWDED, look: bool = True, cast: bool = False) -> Any:
    dims, m = NET
    p, X, Y = make(seed, dims, m)
    g = grads(p, X, Y, "relu", 0.7, bug)

    def f(q: dict[str, Any]) -> float:
        if cast:  # a loss that computes in float32 whatever the parameters' dtype
            q = {k: v.astype(np.float32) for k, v in q.items()}
        return loss(q, X, Y, "relu", 0.7)

    # Without the look: its threshold set below any loss's precision, so that no loss reads as float64.
    with mock.patch("preflight.check.float64_look.FLOAT64_EPSILON", 1e-10 if look else -1.0):
        return gradcheck(f, p, g)


def test_float32_differences_alone_fail_the_crowded_correct_network() -> None:
    report = check(look=False)
    assert not report.passed and not report.parameters["W1"].passed


def test_the_float64_look_clears_those_failures_and_says_so() -> None:
    report = check()
    assert report.passed, str(report)
    note = next(n for n in report.notes if "pass at float64 copies of the parameters" in n)
    assert "W1[" in note


def test_a_loss_that_casts_to_float32_gets_no_float64_look() -> None:
    report = check(cast=True)
    assert not report.passed
    assert not any("float64 copies" in n for n in report.notes)


@pytest.mark.parametrize("bug", ["one-element", "db-not-averaged", "l2-forgotten"])
def test_a_bug_in_the_crowded_network_still_fails_and_is_named(bug: str) -> None:
    report = check(bug)
    assert not report.passed
    named = {n for n, r in report.parameters.items() if not r.passed}
    expected = {"one-element": {"W2"}, "db-not-averaged": {"b3"}, "l2-forgotten": {"W1", "W2", "W3"}}[bug]
    assert named and named <= expected


@pytest.mark.parametrize("seed", range(3))
def test_correct_networks_pass_and_the_caller_params_are_untouched(seed: int) -> None:
    dims, m = NET
    p, X, Y = make(seed, dims, m)
    before = {k: v.copy() for k, v in p.items()}
    report = gradcheck(lambda q: loss(q, X, Y, "relu", 0.7), p, grads(p, X, Y, "relu", 0.7))
    assert report.passed, str(report)
    assert all(np.array_equal(p[k], before[k]) and p[k].dtype == np.float32 for k in p)
