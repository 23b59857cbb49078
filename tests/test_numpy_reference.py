"""The float64 copy of a float32 NumPy check with a callable gradient (preflight.check.numpy_reference; issue #12:
every float32 bug >= 1e-3 caught).

In a float32 ReLU network at batch 256, kinks keep each coordinate's float32 difference to about 1e-3 of the
gradient: db1 x 0.99 (relative size 1.6e-3) passes. With ``grads`` a function, the same loss and backward run at
float64 copies of the parameters and fail it, named. Correct networks pass; a ``grads`` that casts to float32, a
gradient given as arrays, ``reference=False`` and sampled checks get no copy; the caller's arrays are untouched.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
import pytest

from preflight import gradcheck
from preflight.check.numpy_reference import ARRAYS_NOTE
from preflight.check.reference import REFERENCE_NOTE

from .numpy_nets import grads, loss, make

NET = ((20, 32, 16, 1), 256)
SEED = 10  # db1 x 0.99 is 1.6e-3 in relative size here, and float32 differences alone pass it


def problem(bug: str = "", seed: int = SEED) -> tuple[Any, Any, Any]:
    dims, m = NET
    p, X, Y = make(seed, dims, m)
    return p, (lambda q: loss(q, X, Y, "relu", 0.7)), (lambda q: grads(q, X, Y, "relu", 0.7, bug))


def copy_note(report: Any) -> str:
    return next((n for n in report.notes if n.startswith(REFERENCE_NOTE)), "")


def test_a_scale_error_float32_differences_miss_fails_through_the_float64_copy() -> None:
    p, f, g = problem("b1-scaled")
    # float32 differences alone (without the pooled look at float64 copies, which catches it too) pass it
    with mock.patch("preflight.check.engine.wide_pooled_look", lambda *a, **k: None):
        assert gradcheck(f, p, g(p)).passed  # as arrays: no copy
        report = gradcheck(f, p, g)
    assert not report.passed
    assert [n for n, r in report.parameters.items() if not r.passed] == ["b1"]
    assert "fails b1" in copy_note(report) and report.reference is not None


@pytest.mark.parametrize("seed", range(3))
def test_a_correct_network_passes_with_its_copy_and_the_params_are_untouched(seed: int) -> None:
    p, f, g = problem(seed=seed)
    before = {k: v.copy() for k, v in p.items()}
    report = gradcheck(f, p, g)
    assert report.passed, str(report)
    assert "passed" in copy_note(report)
    assert all(p[k].dtype == np.float32 and np.array_equal(p[k], before[k]) for k in p)


def test_grads_that_cast_to_float32_get_no_copy_and_say_why() -> None:
    p, f, g = problem()
    report = gradcheck(f, p, lambda q: {k: v.astype(np.float32) for k, v in g(q).items()})
    assert report.passed and report.reference is None
    assert "returns float32 at float64 parameters" in copy_note(report)


@pytest.mark.parametrize("options", [{"reference": False}, {"sample": 0.5}])
def test_no_copy_when_refused_or_sampled(options: dict[str, Any]) -> None:
    p, f, g = problem("b1-scaled")
    report = gradcheck(f, p, g, **options)
    assert report.reference is None and not copy_note(report)


def test_a_sampled_check_makes_the_copy_when_asked() -> None:
    p, f, g = problem("b1-scaled")
    report = gradcheck(f, p, g, sample=0.5, reference=True)
    assert report.reference is not None and not report.passed


def test_a_float64_check_makes_no_copy() -> None:
    p, f, g = problem()
    wide = {k: v.astype(np.float64) for k, v in p.items()}
    assert gradcheck(f, wide, g).reference is None


@pytest.mark.parametrize("bad", ["yes", 1, np.bool_(True)])
def test_a_reference_that_is_not_a_bool_is_refused(bad: Any) -> None:
    p, f, g = problem()
    with pytest.raises(ValueError, match="reference: expected True, False or None"):
        gradcheck(f, p, g, reference=bad)


def test_a_float32_check_that_passes_a_gradient_given_as_arrays_says_how_to_have_it_checked_at_float64() -> None:
    p, f, g = problem()
    assert ARRAYS_NOTE in gradcheck(f, p, g(p)).notes  # as arrays: the note names what it cannot see
    assert ARRAYS_NOTE not in gradcheck(f, p, g).notes  # as a function: checked at float64 copies instead
    assert ARRAYS_NOTE not in gradcheck(f, p, g(p), reference=False).notes  # the caller said no copy
    wide = {k: v.astype(np.float64) for k, v in p.items()}
    assert ARRAYS_NOTE not in gradcheck(f, wide, g(wide)).notes  # float64: nothing finer to run
    broken = problem("db-not-averaged")
    assert ARRAYS_NOTE not in gradcheck(broken[1], broken[0], broken[2](broken[0])).notes  # failed: nothing to add
