"""preflight.jax.propagation: the NumPy diagnostics' per-layer report measured on a JAX model's jaxpr."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from preflight.jax import propagation  # noqa: E402
from preflight.nn import Network  # noqa: E402
from preflight.propagation import analyze  # noqa: E402

pytestmark = pytest.mark.jax


def apply(params: list[dict[str, Any]], x: Any, activation: Any = jnp.tanh) -> Any:
    for layer in params[:-1]:
        x = activation(x @ layer["kernel"] + layer["bias"])
    return x @ params[-1]["kernel"] + params[-1]["bias"]


def test_a_50_layer_tanh_mlp_with_unit_normal_weights_is_saturated_as_in_numpy() -> None:
    width, depth = 64, 50
    net = Network([width] * (depth + 2), hidden="tanh", output="softmax")
    weights = net.init(0, "standard_normal")
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((128, width)), rng.integers(0, width, 128)
    expected = analyze(net, weights, X, y, warn=False)
    params = [{"kernel": jnp.asarray(weights[f"W{k}"].T, jnp.float32), "bias": jnp.zeros(width)}
              for k in range(1, depth + 2)]  # fmt: skip
    report = propagation(apply, params, jnp.asarray(X, jnp.float32), warn=False)
    assert report.verdict == expected.verdict == "saturated"
    assert report.layers_with("saturated") == expected.layers_with("saturated") == list(range(1, depth + 1))
    assert report.recommendation.scheme == "lecun"
    # N(0, 1) tanh is chaotic (chi ~ 10 per layer): float32 and float64 paths part ways element by element, the
    # statistics of a layer's 8,192 activations do not (std within 2 %; the anchor: 0.982 at width 512).
    for got, want in zip(report.layers[:-1], expected.layers[:-1], strict=True):
        assert got.std == pytest.approx(want.std, rel=0.02)
        assert got.saturated_fraction == pytest.approx(want.saturated_fraction, abs=0.03)


def test_the_figures_match_the_numpy_diagnostics_on_the_same_network() -> None:
    rng = np.random.default_rng(0)
    net = Network([16, 32, 32, 4], hidden="tanh", output="softmax")
    params = net.init(0, "lecun")
    X, y = rng.standard_normal((128, 16)), rng.integers(0, 4, 128)
    expected = analyze(net, params, X, y, warn=False)
    with jax.enable_x64(True):
        flax_style = [{"kernel": jnp.asarray(params[f"W{k}"].T), "bias": jnp.asarray(params[f"b{k}"].ravel())}
                      for k in (1, 2, 3)]  # fmt: skip

        def xent(logits: Any, y: Any) -> Any:
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

        got = propagation(apply, flax_style, (jnp.asarray(X), jnp.asarray(y)), xent, warn=False)
    assert got.verdict == expected.verdict
    for a, b in zip(got.layers, expected.layers, strict=True):
        assert a.activation == b.activation and a.verdict == b.verdict
        for field in ("std", "pre_rms", "delta_norm", "weight_grad_norm", "sigma_w2", "predicted_rms"):
            # The same float64 computation in two libraries: equal to rounding.
            assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-9), field
        if b.chi_measured is not None:
            assert a.chi_measured == pytest.approx(b.chi_measured, rel=1e-9)
            assert a.chi_predicted == pytest.approx(b.chi_predicted, rel=1e-9)


def test_relu_with_tiny_weights_vanishes_and_he_is_healthy_in_flax() -> None:
    linen = pytest.importorskip("flax.linen")

    class Deep(linen.Module):
        std: float | None

        @linen.compact
        def __call__(self, x: Any) -> Any:
            init = linen.initializers.normal(self.std) if self.std else linen.initializers.he_normal()
            for _ in range(10):
                x = linen.relu(linen.Dense(64, kernel_init=init)(x))
            return linen.Dense(4)(x)

    x = jax.random.normal(jax.random.key(0), (256, 64))
    for std, verdict in ((0.01, "vanishing"), (None, "healthy")):
        model = Deep(std)
        report = propagation(model.apply, model.init(jax.random.key(1), x), x, warn=False)
        assert report.verdict == verdict
    assert report.recommendation.scheme == "he"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="apply_fn: expected a callable"):
        propagation("model", [], jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="no product"):
        propagation(lambda p, x: x * p["s"], {"s": jnp.ones(2)}, jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="batch"):
        propagation(apply, [{"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}], "x")
