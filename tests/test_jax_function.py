"""preflight.jax.check_function: hand-written custom_vjp / custom_jvp rules, correct ones pass and planted bugs are
caught and localized, in float32 (x64 off, JAX's default) and float64 (x64 on, inside jax.enable_x64 only)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from preflight.jax import check_function  # noqa: E402

from .jax_cases import CASES, Case  # noqa: E402

pytestmark = pytest.mark.jax
DTYPES = {"float32": (jnp.float32, False), "float64": (jnp.float64, True)}


def run(case: Case, dtype: str, seed: int = 0) -> Any:
    kind, x64 = DTYPES[dtype]
    with jax.enable_x64(x64):
        f, args = case.build(kind, seed)
        assert all(a.dtype == kind for a in args)
        return check_function(f, *args, modes=case.modes, names=case.names)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [c for c in CASES if c.bug is None], ids=lambda c: c.name)
def test_a_correct_rule_passes(case: Case, dtype: str) -> None:
    report = run(case, dtype)
    assert report.passed, str(report)
    assert report.dtype == dtype and report.unit == "Jacobian entries"
    assert set(report.parameters) == set(case.names)
    if "fwd" in case.modes:
        assert report.forward_ad is not None and all(r.passed for r in report.forward_ad.values())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", [c for c in CASES if c.bug is not None], ids=lambda c: c.name)
def test_a_planted_bug_is_caught_in_its_input(case: Case, dtype: str) -> None:
    report = run(case, dtype)
    assert not report.passed and report.verdict == "FAILED"
    failing = {n for n, r in report.parameters.items() if not r.passed}
    assert failing == {case.where}, str(report)
    if case.hint is not None:
        assert any(case.hint in h for h in report.hints), report.hints
    if case.element is not None:
        worst = report.parameters[case.where].failing()
        assert {c.index for c in worst} == {case.element}
    if "fwd" in case.modes:  # a wrong custom_jvp rule is wrong in both modes
        assert not report.forward_ad[case.where].passed


def test_the_kinks_at_relu_are_set_aside_not_failed() -> None:
    report = run(next(c for c in CASES if c.name.startswith("ReLU")), "float32")
    assert report.passed and report.kinks
    assert all(name in ("x", "w", "b") for name, _ in report.kinks)


def test_a_failing_entry_names_its_input_and_output_elements() -> None:
    report = run(next(c for c in CASES if c.bug == "sign"), "float64")
    worst = report.parameters["x"].failing()[0]
    assert len(worst.index) == 2 and worst.output is not None and worst.output[0] == 0
    assert worst.analytic == pytest.approx(-worst.numeric, rel=1e-6)


def test_the_jvp_of_a_custom_vjp_is_skipped_with_a_note_unless_asked_alone() -> None:
    case = next(c for c in CASES if c.name == "tanh layer, correct")
    f, args = case.build(jnp.float32, 0)
    report = check_function(f, *args)
    assert report.passed and report.forward_ad is None
    assert any("forward-mode AD (JVP) not checked" in n for n in report.notes)
    with pytest.raises(ValueError, match="modes: forward-mode AD"):
        check_function(f, *args, modes=("fwd",))


def test_pytrees_in_and_out_a_jitted_function_and_x64() -> None:
    @jax.jit
    def f(x: Any, p: dict[str, Any]) -> Any:
        return {"y": jnp.tanh(x @ p["w"]), "n": jnp.sum(p["w"] ** 2), "count": jnp.int32(3)}

    x = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)
    report = check_function(f, x, {"w": jnp.ones((3, 2)) / 3})
    assert report.passed and set(report.parameters) == {"input0", "input1['w']"}
    assert any("not floating-point" in n for n in report.notes)
    with jax.enable_x64(True):
        report = check_function(f, x.astype(jnp.float64), {"w": jnp.ones((3, 2), jnp.float64) / 3})
    assert report.passed and report.dtype == "float64"
    assert report.difference < 1e-8


def test_large_outputs_are_checked_through_projections() -> None:
    def f(x: Any) -> Any:
        return jnp.outer(jnp.sin(x), jnp.cos(x))

    report = check_function(f, jnp.linspace(0.1, 2.0, 40), max_outputs=100)
    assert report.passed
    assert any("16 random projections" in n for n in report.notes)
    assert report.parameters["input0"].worst[0].output is None


def test_numpy_inputs_are_left_as_they_were() -> None:
    x = np.linspace(-1.0, 1.0, 5).astype(np.float32)
    saved = x.copy()
    assert check_function(jnp.sin, x).passed
    assert np.array_equal(x, saved)


def test_a_random_function_and_an_output_not_finite_stop_the_check() -> None:
    def noisy(x: Any) -> Any:  # a host-side draw at every call: what a forgotten fixed key looks like
        draw = jax.pure_callback(
            lambda: np.float32(np.random.default_rng().random()), jax.ShapeDtypeStruct((), jnp.float32)
        )
        return x * (1 + 1e-3 * draw)

    report = check_function(noisy, jnp.ones(3))
    assert not report.passed and "random" in report.stopped
    report = check_function(jnp.log, jnp.array([1.0, 0.0]))
    assert not report.passed and "not finite at the given inputs" in report.stopped


def test_a_step_that_leaves_the_domain_shrinks_for_that_element_as_in_torch() -> None:
    # sqrt at 1e-9: the step 6e-6 leaves the domain; halved until the outputs are finite, it checks the element.
    with jax.enable_x64(True):
        report = check_function(jnp.sqrt, jnp.array([1.0, 1e-9]))
    assert report.passed, str(report)
    assert any("step shrunk" in n and "input0[1]" in n for n in report.notes), report.notes
    # Where no step of at least 32 ulps stays inside, the element is named as not checkable, not failed.
    report = check_function(jnp.log, jnp.array([1.0, 1e-30]))
    assert report.verdict != "FAILED" and any("not checkable" in n and "input0[1]" in n for n in report.notes)


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="modes"):
        check_function(jnp.sin, jnp.ones(2), modes=("reverse",))
    with pytest.raises(ValueError, match="names: expected 1"):
        check_function(jnp.sin, jnp.ones(2), names=["a", "b"])
    with pytest.raises(ValueError, match="bfloat16 has too few significant bits"):
        check_function(jnp.sin, jnp.ones(2, jnp.bfloat16))
    with pytest.raises(ValueError, match="floating-point array"):
        check_function(jnp.sin, jnp.arange(3))
    with pytest.raises(ValueError, match="no floating-point output"):
        check_function(lambda x: jnp.argmax(x), jnp.ones(3))
