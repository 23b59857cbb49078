"""A sweep over jax.numpy, jax.lax and jax.nn functions with small float64 inputs: what check_function and
jax.test_util.check_grads each say about JAX's own derivative rules (tests/test_jax_sweep.py and the table in
docs/guides/jax.md from benchmarks/jax_versus_check_grads.py run it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _x(shape: tuple[int, ...] = (3, 4), low: float = -2.0, high: float = 2.0, seed: int = 0) -> Any:
    return jnp.asarray(np.random.default_rng(seed).uniform(low, high, shape), jnp.float64)


def _spd(n: int = 3) -> Any:
    a = np.random.default_rng(1).standard_normal((n, n))
    return jnp.asarray(a @ a.T + n * np.eye(n))


def _square(n: int = 3, seed: int = 2) -> Any:
    return jnp.asarray(np.random.default_rng(seed).standard_normal((n, n)) + 2 * np.eye(n))


def _conv(x: Any, w: Any) -> Any:
    return lax.conv_general_dilated(x, w, (1, 1), "SAME")


def _scan_cumprod(x: Any) -> Any:
    return lax.scan(lambda c, v: (c * v, c * v), jnp.ones(x.shape[1:]), x)[1]


def _fori(x: Any) -> Any:
    return lax.fori_loop(0, 3, lambda i, v: jnp.sin(v) + v * 0.5, x)


def _cond(x: Any) -> Any:
    return lax.cond(jnp.sum(x) > 0, jnp.sin, jnp.cos, x)


def _max_pool(x: Any) -> Any:
    return lax.reduce_window(x, -jnp.inf, lax.max, (2, 2), (1, 1), "VALID")


#: (name, function, arguments): inputs inside each domain, away from kinks and ties (random, so no ties).
SWEEP: list[tuple[str, Callable[..., Any], Callable[[], tuple[Any, ...]]]] = [
    ("jnp.sin", jnp.sin, lambda: (_x(),)),
    ("jnp.cos", jnp.cos, lambda: (_x(),)),
    ("jnp.tan", jnp.tan, lambda: (_x(low=-1.2, high=1.2),)),
    ("jnp.tanh", jnp.tanh, lambda: (_x(),)),
    ("jnp.exp", jnp.exp, lambda: (_x(),)),
    ("jnp.exp2", jnp.exp2, lambda: (_x(),)),
    ("jnp.expm1", jnp.expm1, lambda: (_x(),)),
    ("jnp.log", jnp.log, lambda: (_x(low=0.2, high=3.0),)),
    ("jnp.log1p", jnp.log1p, lambda: (_x(low=-0.5, high=3.0),)),
    ("jnp.log2", jnp.log2, lambda: (_x(low=0.2, high=3.0),)),
    ("jnp.log10", jnp.log10, lambda: (_x(low=0.2, high=3.0),)),
    ("jnp.sqrt", jnp.sqrt, lambda: (_x(low=0.2, high=3.0),)),
    ("jnp.cbrt", jnp.cbrt, lambda: (_x(low=0.2, high=3.0),)),
    ("jnp.reciprocal", jnp.reciprocal, lambda: (_x(low=0.5, high=3.0),)),
    ("jnp.square", jnp.square, lambda: (_x(),)),
    ("jnp.power(x, 3.5)", lambda x: jnp.power(x, 3.5), lambda: (_x(low=0.2, high=2.0),)),
    ("jnp.abs", jnp.abs, lambda: (_x(),)),
    ("jnp.sinh", jnp.sinh, lambda: (_x(),)),
    ("jnp.cosh", jnp.cosh, lambda: (_x(),)),
    ("jnp.arcsin", jnp.arcsin, lambda: (_x(low=-0.9, high=0.9),)),
    ("jnp.arccos", jnp.arccos, lambda: (_x(low=-0.9, high=0.9),)),
    ("jnp.arctan", jnp.arctan, lambda: (_x(),)),
    ("jnp.arcsinh", jnp.arcsinh, lambda: (_x(),)),
    ("jnp.arccosh", jnp.arccosh, lambda: (_x(low=1.2, high=3.0),)),
    ("jnp.arctanh", jnp.arctanh, lambda: (_x(low=-0.9, high=0.9),)),
    ("jnp.sinc", jnp.sinc, lambda: (_x(),)),
    ("jnp.arctan2", jnp.arctan2, lambda: (_x(), _x(seed=1))),
    ("jnp.hypot", jnp.hypot, lambda: (_x(), _x(seed=1))),
    ("jnp.maximum", jnp.maximum, lambda: (_x(), _x(seed=1))),
    ("jnp.minimum", jnp.minimum, lambda: (_x(), _x(seed=1))),
    ("jnp.logaddexp", jnp.logaddexp, lambda: (_x(), _x(seed=1))),
    ("jnp.where", lambda x: jnp.where(x > 0, x**2, jnp.sin(x)), lambda: (_x(),)),
    ("jnp.clip", lambda x: jnp.clip(x, -1.0, 1.0), lambda: (_x(),)),
    ("jnp.sum", lambda x: jnp.sum(x, axis=0), lambda: (_x(),)),
    ("jnp.mean", jnp.mean, lambda: (_x(),)),
    ("jnp.var", lambda x: jnp.var(x, axis=1), lambda: (_x(),)),
    ("jnp.std", lambda x: jnp.std(x, axis=1), lambda: (_x(),)),
    ("jnp.prod", lambda x: jnp.prod(x, axis=1), lambda: (_x(),)),
    ("jnp.cumsum", lambda x: jnp.cumsum(x, axis=1), lambda: (_x(),)),
    ("jnp.cumprod", lambda x: jnp.cumprod(x, axis=1), lambda: (_x(),)),
    ("jnp.max", lambda x: jnp.max(x, axis=1), lambda: (_x(),)),
    ("jnp.min", lambda x: jnp.min(x, axis=0), lambda: (_x(),)),
    ("jnp.sort", lambda x: jnp.sort(x, axis=1), lambda: (_x(),)),
    ("jnp.linalg.norm", jnp.linalg.norm, lambda: (_x(),)),
    ("jnp.matmul", jnp.matmul, lambda: (_x(), _x((4, 2), seed=1))),
    ("jnp.outer", jnp.outer, lambda: (_x((3,)), _x((4,), seed=1))),
    ("jnp.einsum", lambda a, b: jnp.einsum("ij,kj->ik", a, b), lambda: (_x(), _x((2, 4), seed=1))),
    ("jnp.tensordot", lambda a, b: jnp.tensordot(a, b, axes=1), lambda: (_x(), _x((4, 2), seed=1))),
    ("jnp.kron", jnp.kron, lambda: (_x((2, 2)), _x((2, 2), seed=1))),
    ("jnp.cross", jnp.cross, lambda: (_x((3,)), _x((3,), seed=1))),
    ("jnp.trace", jnp.trace, lambda: (_x((3, 3)),)),
    ("jnp.roll", lambda x: jnp.roll(x, 1, axis=1) * x, lambda: (_x(),)),
    ("jnp.concatenate", lambda a, b: jnp.concatenate([a, b]) ** 2, lambda: (_x(), _x(seed=1))),
    ("jnp.polyval", lambda p, x: jnp.polyval(p, x), lambda: (_x((4,)), _x((5,), seed=1))),
    ("jnp.convolve", jnp.convolve, lambda: (_x((6,)), _x((3,), seed=1))),
    ("jnp.linalg.det", jnp.linalg.det, lambda: (_square(),)),
    ("jnp.linalg.inv", jnp.linalg.inv, lambda: (_square(),)),
    ("jnp.linalg.slogdet", lambda a: jnp.linalg.slogdet(a)[1], lambda: (_square(),)),
    ("jnp.linalg.solve", jnp.linalg.solve, lambda: (_square(), _x((3, 2), seed=3))),
    ("jnp.linalg.cholesky", lambda a: jnp.linalg.cholesky((a + a.T) / 2), lambda: (_spd(),)),
    ("jnp.linalg.eigvalsh", lambda a: jnp.linalg.eigvalsh((a + a.T) / 2), lambda: (_spd(),)),
    ("jnp.linalg.svd (values)", lambda a: jnp.linalg.svd(a, compute_uv=False), lambda: (_square(),)),
    ("jnp.linalg.qr (R)", lambda a: jnp.linalg.qr(a)[1], lambda: (_square(),)),
    ("jax.nn.relu", jax.nn.relu, lambda: (_x(),)),
    ("jax.nn.relu6", jax.nn.relu6, lambda: (_x(high=8.0),)),
    ("jax.nn.sigmoid", jax.nn.sigmoid, lambda: (_x(),)),
    ("jax.nn.softplus", jax.nn.softplus, lambda: (_x(),)),
    ("jax.nn.silu", jax.nn.silu, lambda: (_x(),)),
    ("jax.nn.gelu (tanh)", jax.nn.gelu, lambda: (_x(),)),
    ("jax.nn.gelu (erf)", lambda x: jax.nn.gelu(x, approximate=False), lambda: (_x(),)),
    ("jax.nn.elu", jax.nn.elu, lambda: (_x(),)),
    ("jax.nn.celu", jax.nn.celu, lambda: (_x(),)),
    ("jax.nn.selu", jax.nn.selu, lambda: (_x(),)),
    ("jax.nn.leaky_relu", jax.nn.leaky_relu, lambda: (_x(),)),
    ("jax.nn.log_sigmoid", jax.nn.log_sigmoid, lambda: (_x(),)),
    ("jax.nn.hard_tanh", jax.nn.hard_tanh, lambda: (_x(),)),
    ("jax.nn.squareplus", jax.nn.squareplus, lambda: (_x(),)),
    ("jax.nn.mish", jax.nn.mish, lambda: (_x(),)),
    ("jax.nn.glu", jax.nn.glu, lambda: (_x(),)),
    ("jax.nn.softmax", jax.nn.softmax, lambda: (_x(),)),
    ("jax.nn.log_softmax", jax.nn.log_softmax, lambda: (_x(),)),
    ("jax.nn.logsumexp", lambda x: jax.nn.logsumexp(x, axis=1), lambda: (_x(),)),
    ("jax.nn.standardize", jax.nn.standardize, lambda: (_x(),)),
    ("lax.erf", lax.erf, lambda: (_x(),)),
    ("lax.erfc", lax.erfc, lambda: (_x(),)),
    ("lax.erf_inv", lax.erf_inv, lambda: (_x(low=-0.9, high=0.9),)),
    ("lax.lgamma", lax.lgamma, lambda: (_x(low=0.5, high=4.0),)),
    ("lax.digamma", lax.digamma, lambda: (_x(low=0.5, high=4.0),)),
    ("lax.logistic", lax.logistic, lambda: (_x(),)),
    ("lax.rsqrt", lax.rsqrt, lambda: (_x(low=0.2, high=3.0),)),
    ("lax.integer_pow", lambda x: lax.integer_pow(x, 5), lambda: (_x(),)),
    ("lax.cummax", lambda x: lax.cummax(x, axis=1), lambda: (_x(),)),
    ("lax.dynamic_slice", lambda x: lax.dynamic_slice(x, (1, 1), (2, 2)) ** 2, lambda: (_x(),)),
    ("lax.conv_general_dilated", _conv, lambda: (_x((1, 2, 5, 5)), _x((3, 2, 3, 3), seed=1))),
    ("lax.reduce_window (max pool)", _max_pool, lambda: (_x((4, 4)),)),
    ("lax.scan (cumulative product)", _scan_cumprod, lambda: (_x(),)),
    ("lax.fori_loop", _fori, lambda: (_x(),)),
    ("lax.cond", _cond, lambda: (_x(),)),
    ("lax.sort", lambda x: lax.sort(x, dimension=0), lambda: (_x(),)),
    ("lax.top_k (values)", lambda x: lax.top_k(x, 2)[0], lambda: (_x(),)),
]


def check_grads_passes(f: Callable[..., Any], args: tuple[Any, ...], modes: tuple[str, ...] = ("fwd", "rev")) -> bool:
    """jax.test_util.check_grads at order 1 in both modes, its direction seeded (numpy's global generator)."""
    from jax.test_util import check_grads

    np.random.seed(0)  # noqa: NPY002 - check_grads draws its direction from the global generator
    try:
        check_grads(f, args, order=1, modes=modes)
    except AssertionError:
        return False
    return True
