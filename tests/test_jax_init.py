"""preflight.jax.initialize: fans right in Flax's (in, out) and Equinox's (out, in) layouts (variances against
jax.nn.initializers.variance_scaling), He/LeCun by the traced activation, LSUV, biases zero, params untouched."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

jax = pytest.importorskip("jax")
jnp = jax.numpy

from preflight.jax import initialize  # noqa: E402

pytestmark = pytest.mark.jax

SCHEMES = {  # preflight's name -> JAX's variance_scaling (scale, mode), both normal
    "he": (2.0, "fan_in"),
    "lecun": (1.0, "fan_in"),
    "glorot": (1.0, "fan_avg"),
    "he_fan_out": (2.0, "fan_out"),
}


@pytest.mark.parametrize("shape", [(64, 32), (3, 3, 8, 16)], ids=["dense (in, out)", "conv (h, w, in, out)"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_variance_of_a_flax_kernel_matches_jax_variance_scaling(scheme: str, shape: tuple[int, ...]) -> None:
    params = {"layer": {"kernel": jnp.zeros(shape), "bias": jnp.ones(shape[-1])}}
    new, _ = initialize(params, scheme, rng=0)
    kernel = np.asarray(new["layer"]["kernel"], dtype=np.float64)
    scale, mode = SCHEMES[scheme]
    # JAX's own variance for this shape (its fans: in_axis=-2, out_axis=-1, the rest a receptive field), measured on
    # 64 draws (precise to about 1 %): our draw must come from the same normal.
    draw = jax.nn.initializers.variance_scaling(scale, mode, "normal")
    reference = jax.vmap(lambda k: draw(k, shape))(jax.random.split(jax.random.key(0), 64))
    expected = float(np.var(np.asarray(reference, dtype=np.float64)))
    # Kolmogorov-Smirnov against N(0, expected), as torch's test_init does (p > 1e-4).
    assert stats.kstest(kernel.ravel(), "norm", args=(0.0, np.sqrt(expected))).pvalue > 1e-4
    assert float(jnp.sum(new["layer"]["bias"])) == 0.0
    assert float(jnp.sum(params["layer"]["kernel"])) == 0.0  # the caller's params are untouched


def test_auto_picks_he_after_relu_and_lecun_after_tanh_in_flax_and_equinox() -> None:
    flax = pytest.importorskip("flax")
    eqx = pytest.importorskip("equinox")
    from flax import linen

    class Model(linen.Module):
        @linen.compact
        def __call__(self, x: Any) -> Any:
            x = linen.relu(linen.Dense(64)(x))
            x = jnp.tanh(linen.Dense(64)(x))
            return linen.Dense(2)(x)

    x = jax.random.normal(jax.random.key(0), (128, 100))
    model = Model()
    new, report = initialize(model.init(jax.random.key(1), x), apply_fn=model.apply, batch=x)
    assert [(r.activation, r.scheme) for r in report.layers] == [
        ("relu", "he (gain sqrt 2)"), ("tanh", "lecun"), ("none", "lecun")]  # fmt: skip
    kernel = np.asarray(new["params"]["Dense_0"]["kernel"])
    assert kernel.shape == (100, 64) and np.var(kernel) * 100 == pytest.approx(2.0, rel=0.05)

    emodel = eqx.nn.MLP(100, 2, 64, 2, activation=jax.nn.relu, key=jax.random.key(2))
    new, report = initialize(emodel, apply_fn=lambda m, x: jax.vmap(m)(x), batch=x)
    assert [r.activation for r in report.layers] == ["relu", "relu", "none"]
    weight = np.asarray(new.layers[0].weight)
    assert weight.shape == (64, 100) and np.var(weight) * 100 == pytest.approx(2.0, rel=0.05)  # fan_in = 100
    assert float(jnp.abs(new.layers[0].bias).sum()) == 0.0
    assert flax is not None


def test_lsuv_brings_every_layer_output_to_unit_variance() -> None:
    def apply(params: Any, x: Any) -> Any:
        for layer in params[:-1]:
            x = jnp.tanh(x @ layer["kernel"] + layer["bias"])
        return x @ params[-1]["kernel"] + params[-1]["bias"]

    params = [{"kernel": jnp.zeros((32, 32)), "bias": jnp.zeros(32)} for _ in range(4)]
    x = 5 * jax.random.normal(jax.random.key(0), (256, 32))
    _, report = initialize(params, "lsuv", apply_fn=apply, batch=x)
    assert report.scheme == "lsuv" and len(report.layers) == 4
    assert all(abs(r.variance_after - 1) <= 0.1 for r in report.layers)
    assert report.layers[0].variance_before == pytest.approx(25, rel=0.2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="apply_fn, batch"):
        initialize({"kernel": jnp.zeros((2, 2))}, apply_fn=lambda p, x: x)
    with pytest.raises(ValueError, match="lsuv"):
        initialize({"kernel": jnp.zeros((2, 2))}, "lsuv")
    with pytest.raises(ValueError, match="no leaf with 2 or more dimensions"):
        initialize({"bias": jnp.zeros(2)})
    with pytest.raises(ValueError, match="scheme"):
        initialize({"kernel": jnp.zeros((2, 2))}, "kaiming_he")
