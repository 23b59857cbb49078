"""A hand-written ``custom_vjp`` rule checked in JAX's default float32, correct and with dW doubled: the tour's
JAX section."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from preflight.check import GradcheckReport
from preflight.jax.function import check_function

__all__ = ["dense_tanh", "planted_bug"]


def dense_tanh(bug: bool = False) -> Any:
    """``tanh(x @ w)`` with a hand-written VJP; ``bug`` doubles dW."""

    @jax.custom_vjp
    def layer(x: Any, w: Any) -> Any:
        return jnp.tanh(x @ w)

    def forward(x: Any, w: Any) -> Any:
        y = jnp.tanh(x @ w)
        return y, (x, w, y)

    def backward(saved: Any, g: Any) -> Any:
        x, w, y = saved
        dz = g * (1 - y**2)
        return dz @ w.T, (2 if bug else 1) * x.T @ dz

    layer.defvjp(forward, backward)
    return layer


def planted_bug() -> tuple[GradcheckReport, GradcheckReport]:
    """The reports on the correct rule and on the rule with dW doubled, in float32.

    Examples
    --------
    >>> correct, buggy = planted_bug()
    >>> correct.passed, buggy.hints
    (True, ['w: analytic = 2.00 x numeric'])
    """
    x = jnp.linspace(-1.0, 1.0, 12).reshape(4, 3)
    w = jnp.linspace(-0.5, 0.5, 6).reshape(3, 2)
    reports = [check_function(dense_tanh(bug), x, w, names=["x", "w"], modes=("rev",)) for bug in (False, True)]
    return reports[0], reports[1]
