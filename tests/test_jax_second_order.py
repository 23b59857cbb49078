"""preflight.jax.check_function(order=2): the backward's own derivatives (what jax.test_util.check_grads(order=2)
checks along one random direction) per entry: correct functions pass in float32 and float64, a backward that is
right in value but wrong in its derivatives is caught and located, a first-order bug is reported as such."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from preflight.jax import check_function  # noqa: E402

pytestmark = pytest.mark.jax
DTYPES = {"float32": (jnp.float32, False), "float64": (jnp.float64, True)}


def softplus_with(derivative: Callable[[Any], Any]) -> Any:
    """softplus as a custom_vjp whose backward multiplies the cotangent by ``derivative(x)``."""

    @jax.custom_vjp
    def softplus(x: Any) -> Any:
        return jnp.logaddexp(x, 0.0)

    softplus.defvjp(lambda x: (softplus(x), x), lambda x, g: (g * derivative(x),))
    return softplus


def sigmoid_with_tangent_factor(factor: float) -> Any:
    """jax.nn.sigmoid whose own JVP rule is ``factor`` times the true one: right in value, wrong when differentiated."""

    @jax.custom_jvp
    def sigmoid(x: Any) -> Any:
        return jax.nn.sigmoid(x)

    @sigmoid.defjvp
    def _(primals: Any, tangents: Any) -> Any:
        (x,), (t,) = primals, tangents
        s = jax.nn.sigmoid(x)
        return s, factor * s * (1 - s) * t

    return sigmoid


CORRECT: dict[str, tuple[Callable[..., Any], tuple[tuple[int, ...], ...]]] = {
    "tanh(x @ w)": (lambda x, w: jnp.tanh(x @ w), ((4, 3), (3, 2))),
    "softplus, custom_vjp": (softplus_with(jax.nn.sigmoid), ((6,),)),
    "log_softmax": (lambda z: jax.nn.log_softmax(z, axis=-1), ((3, 4),)),
    "layer norm": (lambda x: (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + 1e-5), ((3, 5),)),
}


def draw(shapes: tuple[tuple[int, ...], ...], kind: Any, seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(s), dtype=kind) for s in shapes]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CORRECT)
def test_a_correct_function_passes_at_the_second_order(name: str, dtype: str) -> None:
    kind, x64 = DTYPES[dtype]
    f, shapes = CORRECT[name]
    with jax.enable_x64(x64):
        for seed in range(3):
            report = check_function(f, *draw(shapes, kind, seed), order=2)
            assert report.passed, str(report)
            assert report.second_order is not None and "grad_output" in report.second_order


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_backward_outside_autodiff_is_caught_at_the_second_order_only(dtype: str) -> None:
    kind, x64 = DTYPES[dtype]
    detached = softplus_with(lambda x: jax.nn.sigmoid(jax.lax.stop_gradient(x)))
    with jax.enable_x64(x64):
        report = check_function(detached, *draw(((6,),), kind, 0), order=2, names=["x"])
    assert all(r.passed for r in report.parameters.values()), "the first order is right"
    assert not report.passed and report.second_order is not None
    assert not report.second_order["x"].passed and report.second_order["grad_output"].passed
    assert any("analytic gradient is exactly 0" in h for h in report.hints)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_factor_two_in_the_curvature_is_caught_and_named(dtype: str) -> None:
    kind, x64 = DTYPES[dtype]
    doubled = softplus_with(sigmoid_with_tangent_factor(2.0))
    with jax.enable_x64(x64):
        report = check_function(doubled, *draw(((6,),), kind, 1), order=2, names=["x"])
    assert all(r.passed for r in report.parameters.values())
    assert not report.passed and not report.second_order["x"].passed
    assert any("2.00 x numeric" in h for h in report.hints), report.hints


def test_a_first_order_bug_is_reported_as_such_not_at_the_second_order() -> None:
    wrong = softplus_with(lambda x: 2 * jax.nn.sigmoid(x))
    report = check_function(wrong, jnp.linspace(-2.0, 2.0, 5), order=2)
    assert not report.passed and report.second_order is None
    assert any("second order not checked" in n for n in report.notes)


@pytest.mark.parametrize("order", [0, 3, True, 2.0])
def test_order_must_be_one_or_two(order: Any) -> None:
    with pytest.raises(ValueError, match="order: expected 1 or 2"):
        check_function(jnp.tanh, jnp.ones(3), order=order)
