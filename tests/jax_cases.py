"""Hand-written JAX derivative rules, correct and with planted bugs: the registry the JAX tests and the JAX
guide's table (docs/guides/jax.md, benchmarks/jax_versus_check_grads.py) both run.

Each case builds ``(f, args)`` in a dtype; ``bug`` says what was planted (None: a correct rule), ``where`` which
argument it is in, ``hint`` a phrase the report's hints must contain, ``element`` the one wrong element if any.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

GELU_A = 0.044715  # the tanh approximation's cubic coefficient (Hendrycks & Gimpel 2016)
SQRT_2_OVER_PI = float(np.sqrt(2 / np.pi))


def _inputs(dtype: Any, seed: int, square: bool = True) -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((5, 4)), dtype)
    w = jnp.asarray(rng.standard_normal((4, 4 if square else 3)) / 2, dtype)
    b = jnp.asarray(0.1 * rng.standard_normal(4 if square else 3), dtype)
    return x, w, b


def tanh_layer(bug: str | None = None) -> Callable[..., Any]:
    """``tanh(x @ w + b)`` with a hand-written VJP; ``bug`` plants one mistake in it."""

    @jax.custom_vjp
    def layer(x: Any, w: Any, b: Any) -> Any:
        return jnp.tanh(x @ w + b)

    def forward(x: Any, w: Any, b: Any) -> Any:
        y = jnp.tanh(x @ w + b)
        return y, (x, w, y)

    def backward(res: Any, g: Any) -> Any:
        x, w, y = res
        dz = g * (1 - y**2)
        gx, gw, gb = dz @ w.T, x.T @ dz, dz.sum(0)
        if bug == "factor 2":
            gw = 2 * gw
        elif bug == "sign":
            gx = -gx
        elif bug == "transpose":
            gw = gw.T
        elif bug == "one element":
            gb = gb.at[2].set(0.0)  # a slice off by one: the last-but-one entry never written
        elif bug == "one element x1.1":
            gw = gw.at[1, 3].multiply(1.1)
        elif bug == "factor 1.01":
            gw = 1.01 * gw
        return gx, gw, gb

    layer.defvjp(forward, backward)
    return layer


def residual_layer(bug: str | None = None) -> Callable[..., Any]:
    """``x + tanh(x @ w + b)``; the bug "missing term" drops the skip connection's identity from dx."""

    @jax.custom_vjp
    def layer(x: Any, w: Any, b: Any) -> Any:
        return x + jnp.tanh(x @ w + b)

    def forward(x: Any, w: Any, b: Any) -> Any:
        y = jnp.tanh(x @ w + b)
        return x + y, (x, w, y)

    def backward(res: Any, g: Any) -> Any:
        x, w, y = res
        dz = g * (1 - y**2)
        gx = dz @ w.T if bug == "missing term" else g + dz @ w.T
        return gx, x.T @ dz, dz.sum(0)

    layer.defvjp(forward, backward)
    return layer


def gelu(bug: str | None = None) -> Callable[..., Any]:
    """GELU (tanh approximation) with a hand-written VJP; "wrong constant" uses sqrt(2/pi) x 0.044715 = 0.0357
    where 0.044715 belongs (a common mix-up of the two forms of the formula)."""
    a = 0.0356774 if bug == "wrong constant" else GELU_A

    @jax.custom_vjp
    def f(x: Any) -> Any:
        return 0.5 * x * (1 + jnp.tanh(SQRT_2_OVER_PI * (x + GELU_A * x**3)))

    def forward(x: Any) -> Any:
        return f(x), x

    def backward(x: Any, g: Any) -> Any:
        t = jnp.tanh(SQRT_2_OVER_PI * (x + GELU_A * x**3))
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * SQRT_2_OVER_PI * (1 + 3 * a * x**2)
        return (g * d,)

    f.defvjp(forward, backward)
    return f


def relu_layer() -> Callable[..., Any]:
    """``relu(x @ w + b)``, correct, its VJP with relu'(0) = 0 (inputs below put units exactly at the kink)."""

    @jax.custom_vjp
    def layer(x: Any, w: Any, b: Any) -> Any:
        return jnp.maximum(x @ w + b, 0)

    def forward(x: Any, w: Any, b: Any) -> Any:
        z = x @ w + b
        return jnp.maximum(z, 0), (x, w, z)

    def backward(res: Any, g: Any) -> Any:
        x, w, z = res
        dz = jnp.where(z > 0, g, 0)
        return dz @ w.T, x.T @ dz, dz.sum(0)

    layer.defvjp(forward, backward)
    return layer


def abs_rule() -> Callable[..., Any]:
    """``|x|`` with a custom JVP using sign(x) (0 at 0): checked in both modes."""

    @jax.custom_jvp
    def f(x: Any) -> Any:
        return jnp.abs(x)

    @f.defjvp
    def f_jvp(primals: Any, tangents: Any) -> Any:
        (x,), (t,) = primals, tangents
        return jnp.abs(x), jnp.sign(x) * t

    return f


def softplus_jvp(bug: str | None = None) -> Callable[..., Any]:
    """``log(1 + exp(x))`` with a custom JVP; "factor 2" doubles the tangent (both modes see it)."""

    @jax.custom_jvp
    def f(x: Any) -> Any:
        return jnp.logaddexp(x, 0.0)

    @f.defjvp
    def f_jvp(primals: Any, tangents: Any) -> Any:
        (x,), (t,) = primals, tangents
        scale = 2.0 if bug == "factor 2" else 1.0
        return f(x), scale * jax.nn.sigmoid(x) * t

    return f


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Any, int], tuple[Callable[..., Any], tuple[Any, ...]]]
    bug: str | None = None
    where: str | None = None
    hint: str | None = None
    element: tuple[int, ...] | None = None
    modes: tuple[str, ...] = ("rev",)
    names: tuple[str, ...] = ("x", "w", "b")


def _layer(make: Callable[..., Any], bug: str | None = None) -> Callable[[Any, int], Any]:
    return lambda dtype, seed: (make(bug), _inputs(dtype, seed))


def _relu(dtype: Any, seed: int) -> Any:
    x, w, b = _inputs(dtype, seed)
    # Park two units exactly at relu's kink for the first sample: b = -(x0 @ w) there, computed in the dtype.
    z0 = x[0] @ w
    b = b.at[:2].set(-z0[:2])
    return relu_layer(), (x, w, b)


def _elementwise(make: Callable[..., Any], bug: str | None = None, at_zero: bool = False) -> Callable[[Any, int], Any]:
    def build(dtype: Any, seed: int) -> Any:
        x = jnp.asarray(np.random.default_rng(seed).standard_normal(8) * 1.5, dtype)
        if at_zero:
            x = x.at[3].set(0.0)
        return make(bug) if bug is not None else make(), (x,)

    return build


CASES = [
    Case("tanh layer, correct", _layer(tanh_layer)),
    Case("tanh layer, dW doubled", _layer(tanh_layer, "factor 2"), "factor 2", "w", "2.00 x numeric"),
    Case("tanh layer, dx sign flipped", _layer(tanh_layer, "sign"), "sign", "x", "sign flip"),
    Case("tanh layer, dW transposed", _layer(tanh_layer, "transpose"), "transpose", "w", "transpose"),
    Case(
        "tanh layer, db[2] never written",
        _layer(tanh_layer, "one element"),
        "one element",
        "b",
        "only 1 of",
        element=(2,),
    ),
    Case(
        "tanh layer, dW[1, 3] x 1.1",
        _layer(tanh_layer, "one element x1.1"),
        "one element",
        "w",
        "only 1 of",
        element=(1, 3),
    ),
    Case("tanh layer, dW x 1.01", _layer(tanh_layer, "factor 1.01"), "factor 1.01", "w", None),
    Case("residual layer, correct", _layer(residual_layer)),
    Case("residual layer, skip term missing in dx", _layer(residual_layer, "missing term"), "missing term", "x", None),
    Case("GELU, correct", _elementwise(gelu, None), names=("x",)),
    Case("GELU, 0.0357 for 0.044715", _elementwise(gelu, "wrong constant"), "wrong constant", "x", None, names=("x",)),
    Case("ReLU layer at its kink, correct", _relu),
    Case("abs at 0 (custom_jvp), correct", _elementwise(abs_rule, at_zero=True), modes=("rev", "fwd"), names=("x",)),
    Case("softplus (custom_jvp), correct", _elementwise(softplus_jvp, None), modes=("rev", "fwd"), names=("x",)),
    Case(
        "softplus (custom_jvp), tangent doubled",
        _elementwise(softplus_jvp, "factor 2"),
        "factor 2",
        "x",
        "2.00 x numeric",
        modes=("rev", "fwd"),
        names=("x",),
    ),
]


def check_grads_verdict(f: Callable[..., Any], args: tuple[Any, ...], modes: tuple[str, ...], seed: int) -> bool:
    """Whether ``jax.test_util.check_grads`` passes (order 1, its default step and tolerances), its random
    direction drawn from numpy's global generator as check_grads does, seeded here."""
    from jax.test_util import check_grads

    np.random.seed(seed)  # noqa: NPY002 - check_grads draws its direction from the global generator
    try:
        check_grads(f, args, order=1, modes=modes)
    except AssertionError:
        return False
    return True
