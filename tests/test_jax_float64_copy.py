"""JAX's float32 checks completed by the same check on float64 copies, inside ``jax.enable_x64`` (issue #12).

JAX computes in float32 by default, so nearly every JAX check is a float32 check: ``check_function`` and
``check_model`` check float64 copies of the arguments too (:mod:`preflight.jax._reference`), and the caller's x64
setting is left as it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from preflight.check.reference import REFERENCE_NOTE  # noqa: E402
from preflight.jax import check_function, check_model  # noqa: E402

#: One element's derivative off by this much (relative): below what float32 differences resolve, far above the
#: 8 float32 ulps the float64 copy is held to.
SMALL = 3e-5


def dense(scale_wrong: float) -> Any:
    """``x @ w`` whose VJP gets ``w``'s element [2, 1] wrong by ``scale_wrong`` (relative)."""

    @jax.custom_vjp
    def f(x: Any, w: Any) -> Any:
        return x @ w

    def forward(x: Any, w: Any) -> Any:
        return x @ w, (x, w)

    def backward(saved: Any, g: Any) -> Any:
        x, w = saved
        gw = (x.T @ g).at[2, 1].multiply(1 + scale_wrong)
        return g @ w.T, gw

    f.defvjp(forward, backward)
    return f


def arguments() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    return jnp.asarray(rng.standard_normal((8, 5)), jnp.float32), jnp.asarray(rng.standard_normal((5, 3)), jnp.float32)


def test_a_vjp_bug_below_float32_resolution_is_caught_by_the_copy_and_x64_is_left_off() -> None:
    x, w = arguments()
    alone = check_function(dense(SMALL), x, w, names=["x", "w"], modes=("rev",), reference=False)
    report = check_function(dense(SMALL), x, w, names=["x", "w"], modes=("rev",))
    assert alone.passed and not report.passed
    assert [n for n, r in report.parameters.items() if not r.passed] == ["w"]
    assert report.parameters["w"].failing()[0].index == (2, 1)
    assert report.reference is not None and not jax.config.jax_enable_x64
    assert jnp.ones(1).dtype == jnp.float32


def test_a_correct_float32_function_passes_with_its_copy() -> None:
    x, w = arguments()
    report = check_function(dense(0.0), x, w, names=["x", "w"])
    assert report.passed and report.reference is not None and report.reference.passed


def test_a_function_that_casts_to_float32_inside_is_checked_alone_with_a_note() -> None:
    x, _ = arguments()
    report = check_function(lambda t: jnp.tanh(t.astype(jnp.float32)), x)
    assert report.passed and report.reference is None
    assert any(n.startswith(f"{REFERENCE_NOTE}: not checked (it returns float32") for n in report.notes), report.notes


def test_check_model_catches_a_float32_gradient_bug_below_resolution_through_the_copy() -> None:
    x, w = arguments()
    loss = lambda p, data: jnp.sum(jnp.tanh(dense(SMALL)(data, p["w"])) ** 2)  # noqa: E731
    assert check_model(loss, {"w": w}, x, reference=False).passed
    report = check_model(loss, {"w": w}, x)
    assert not report.passed and report.worst == "params['w']", report
    sampled = check_model(loss, {"w": w}, x, sample=0.5)
    assert sampled.reference is None and any("a sampled check" in n for n in sampled.notes)


def test_a_reference_that_is_not_a_bool_is_refused() -> None:
    x, w = arguments()
    with pytest.raises(ValueError, match=r"^reference: expected True or False, got 'no'"):
        check_function(dense(0.0), x, w, reference="no")
    with pytest.raises(ValueError, match=r"^reference: expected True, False or None, got 'no'"):
        check_model(lambda p, data: jnp.sum(data @ p["w"]), {"w": w}, x, reference="no")
