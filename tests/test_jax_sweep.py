"""Against a suite we did not write the rules of: JAX's own derivatives of 100 jax.numpy, jax.lax and jax.nn
functions (tests/jax_sweep.py), float64, small inputs inside each domain. check_function's verdict must equal
jax.test_util.check_grads' (both modes) on every one; JAX's rules are right, so both must pass."""

from __future__ import annotations

from typing import Any

import pytest

jax = pytest.importorskip("jax")

from preflight.jax import check_function  # noqa: E402

from .jax_sweep import SWEEP, check_grads_passes  # noqa: E402

pytestmark = [pytest.mark.jax, pytest.mark.slow]


def test_the_sweep_is_large_enough() -> None:
    assert len(SWEEP) >= 60
    assert len({name for name, _, _ in SWEEP}) == len(SWEEP)


@pytest.mark.parametrize(("name", "f", "args"), SWEEP, ids=[name for name, _, _ in SWEEP])
def test_our_verdict_equals_check_grads_in_float64(name: str, f: Any, args: Any) -> None:
    with jax.enable_x64(True):
        values = args()
        report = check_function(f, *values)
        theirs = check_grads_passes(f, values)
    assert report.passed == theirs, f"{name}: ours {report.verdict}, check_grads {theirs}\n{report}"
    assert report.passed and report.dtype == "float64"
    assert report.forward_ad is not None  # JAX's own rules define both modes
