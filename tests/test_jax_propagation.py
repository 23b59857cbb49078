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


ACTIVATIONS = {
    "gelu": (lambda x: jax.nn.gelu(x), "gelu", "he"),
    "gelu_exact": (lambda x: jax.nn.gelu(x, approximate=False), "gelu", "he"),
    "silu": (lambda x: jax.nn.silu(x), "silu", "he"),
    "x_sigmoid_x": (lambda x: x * jax.nn.sigmoid(x), "silu", "he"),
    "tanh": (jnp.tanh, "tanh", "lecun"),
    "relu": (lambda x: jax.nn.relu(x), "relu", "he"),
    "maximum": (lambda x: jnp.maximum(x, 0.0), "relu", "he"),
    "leaky_relu": (lambda x: jax.nn.leaky_relu(x), "leaky_relu", "he"),
    "sigmoid": (lambda x: jax.nn.sigmoid(x), "sigmoid", "glorot"),
    "elu": (lambda x: jax.nn.elu(x), "elu", "he"),
    "softplus": (lambda x: jax.nn.softplus(x), "softplus", "he"),
    "none": (lambda x: x, "linear", "orthogonal"),
}


@pytest.mark.parametrize("key", sorted(ACTIVATIONS))
def test_activations_called_inline_in_a_flax_module_are_told_apart(key: str) -> None:
    linen = pytest.importorskip("flax.linen")
    act, name, scheme = ACTIVATIONS[key]

    class MLP(linen.Module):
        @linen.compact
        def __call__(self, x: Any) -> Any:
            for _ in range(3):
                x = act(linen.Dense(32)(x))  # no module boundary: jax.nn inlines GELU and SiLU into the jaxpr
            return linen.Dense(4)(x)

    x = jax.random.normal(jax.random.key(0), (64, 16))
    model = MLP()
    report = propagation(model.apply, model.init(jax.random.key(1), x), x, warn=False)
    assert [s.activation for s in report.layers] == [name] * 3 + ["logits"]
    assert report.recommendation.scheme == scheme
    # The statistics are those of the activation's output, not of z: GELU's and SiLU's mean is above 0, tanh's
    # output lies in (-1, 1).
    z_model = MLP()
    zs = z_model.apply(model.init(jax.random.key(1), x), x, capture_intermediates=True, mutable=["intermediates"])[1]
    first_z = zs["intermediates"]["Dense_0"]["__call__"][0]
    assert report.layers[0].std == pytest.approx(float(jnp.std(act(first_z))), rel=1e-4)
    assert report.layers[0].pre_rms == pytest.approx(float(jnp.sqrt(jnp.mean(first_z**2))), rel=1e-4)


def test_gelu_mean_field_figures_are_gelus_own() -> None:
    # E[gelu'(h)^2] for h ~ N(0, 2) is 0.49, not ReLU's 0.5; E[gelu(h)^2] is 0.92, not 1 (Monte Carlo beside it).
    from preflight.propagation import mean_field

    h = np.sqrt(2.0) * np.random.default_rng(0).standard_normal(2_000_000)
    t = np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3))
    gelu = 0.5 * h * (1 + t)
    slope = 0.5 * (1 + t) + 0.5 * h * (1 - t**2) * np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * h**2)
    # 2e6 samples: Monte Carlo standard error below 0.2% of these means.
    assert mean_field("gelu", 2.0) == pytest.approx((np.mean(gelu**2), np.mean(slope**2)), rel=1e-2)
    silu = h / (1 + np.exp(-h))
    assert mean_field("silu", 2.0)[0] == pytest.approx(np.mean(silu**2), rel=1e-2)


@pytest.mark.slow
def test_a_50_layer_flax_tanh_mlp_with_unit_normal_weights_is_saturated_as_numpy_and_torch_say() -> None:
    linen = pytest.importorskip("flax.linen")
    torch = pytest.importorskip("torch")
    from preflight.torch import propagation as torch_propagation

    width, depth = 64, 50
    net = Network([width] * (depth + 2), hidden="tanh", output="softmax")
    weights = net.init(0, "standard_normal")
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((128, width)), rng.integers(0, width, 128)
    expected = analyze(net, weights, X, y, warn=False)

    class MLP(linen.Module):
        @linen.compact
        def __call__(self, x: Any) -> Any:
            for _ in range(depth):
                x = jnp.tanh(linen.Dense(width, kernel_init=linen.initializers.normal(1.0))(x))
            return linen.Dense(width)(x)

    x = jnp.asarray(X, jnp.float32)
    model = MLP()
    report = propagation(model.apply, model.init(jax.random.key(0), x), x, warn=False)
    layers = [torch.nn.Linear(width, width) for _ in range(depth + 1)]
    with torch.no_grad():
        for k, layer in enumerate(layers, start=1):
            layer.weight.copy_(torch.as_tensor(weights[f"W{k}"]))
            layer.bias.zero_()
    modules = [m for layer in layers[:-1] for m in (layer, torch.nn.Tanh())] + [layers[-1]]
    in_torch = torch_propagation(torch.nn.Sequential(*modules), torch.as_tensor(X, dtype=torch.float32), warn=False)
    for got in (report, in_torch):
        assert got.verdict == expected.verdict == "saturated"
        assert got.layers_with("saturated") == expected.layers_with("saturated") == list(range(1, depth + 1))
        assert [s.activation for s in got.layers] == ["tanh"] * depth + ["logits"]
        assert got.recommendation.scheme == "lecun"


def test_a_model_jitted_as_a_whole_is_diagnosed_and_initialized_as_it_is_unjitted() -> None:
    linen = pytest.importorskip("flax.linen")
    from preflight.jax import initialize

    class MLP(linen.Module):
        @linen.compact
        def __call__(self, x: Any) -> Any:
            x = jax.nn.gelu(linen.Dense(32)(x))
            return linen.Dense(4)(jnp.tanh(linen.Dense(32)(x)))

    x = jax.random.normal(jax.random.key(0), (64, 16))
    model = MLP()
    variables = model.init(jax.random.key(1), x)
    plain = propagation(model.apply, variables, x, warn=False)
    jitted = propagation(jax.jit(model.apply), variables, x, warn=False)
    assert [s.activation for s in jitted.layers] == [s.activation for s in plain.layers] == ["gelu", "tanh", "logits"]
    for a, b in zip(jitted.layers, plain.layers, strict=True):
        assert a.std == pytest.approx(b.std, rel=1e-5) and a.delta_norm == pytest.approx(b.delta_norm, rel=1e-5)
    _, report = initialize(variables, apply_fn=jax.jit(model.apply), batch=x)
    assert [layer.scheme for layer in report.layers] == ["he (gain sqrt 2)", "lecun", "lecun"]
