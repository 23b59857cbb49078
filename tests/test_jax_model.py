"""preflight.jax.check_model: Flax (linen, nnx), Equinox and plain pytrees on the one engine; the structured
evaluator agrees with plain evaluations; float32 and float64; bugs caught; parameters never modified."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from preflight.check import NondeterministicLossError  # noqa: E402
from preflight.jax import check_model  # noqa: E402
from preflight.jax._pytree import split  # noqa: E402
from preflight.jax._sparse import structured_losses  # noqa: E402
from preflight.jax.check import _vmapped_losses  # noqa: E402

from .jax_cases import tanh_layer  # noqa: E402

pytestmark = pytest.mark.jax


def mlp(sizes: list[int], dtype: Any = jnp.float32, seed: int = 0) -> tuple[dict[str, Any], Any, Any]:
    rng = np.random.default_rng(seed)
    params = {
        f"layer{i}": {"w": jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a), dtype),
                      "b": jnp.asarray(0.1 * rng.standard_normal(b), dtype)}
        for i, (a, b) in enumerate(itertools.pairwise(sizes))
    }  # fmt: skip
    x = jnp.asarray(rng.standard_normal((16, sizes[0])), dtype)
    y = jnp.asarray(rng.integers(0, sizes[-1], 16))
    return params, x, y


def xent(logits: Any, y: Any) -> Any:
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def mlp_loss(params: dict[str, Any], x: Any, y: Any) -> Any:
    layers = list(params.values())
    for layer in layers[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return xent(x @ layers[-1]["w"] + layers[-1]["b"], y)


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
def test_a_correct_mlp_passes_in_both_dtypes(x64: bool) -> None:
    with jax.enable_x64(x64):
        params, x, y = mlp([6, 8, 5, 3], jnp.float64 if x64 else jnp.float32)
        report = check_model(mlp_loss, params, x, y)
    assert report.passed, str(report)
    assert report.dtype == ("float64" if x64 else "float32")
    assert "params['layer0']['w']" in report.parameters
    assert report.notes[0].startswith("strategy: structured")
    if x64:
        assert report.difference < 1e-9


def test_the_structured_evaluator_equals_plain_evaluations() -> None:
    with jax.enable_x64(True):
        params, x, y = mlp([6, 8, 5, 3], jnp.float64)
        tree = split(params, "params")
        of_leaves = tree.bind(mlp_loss)
        leaves = [jnp.asarray(a) for a in tree.arrays]
        for k, a in enumerate(tree.arrays):
            index = jnp.arange(a.size, dtype=jnp.int32)
            values = jnp.asarray(a.reshape(-1) + 0.01 * np.arange(1, a.size + 1))
            fast = jax.jit(structured_losses(of_leaves, k))(leaves, index, values, x, y)
            plain = jax.jit(_vmapped_losses(of_leaves, k))(leaves, index, values, x, y)
            # Rank-one updates instead of products: equal to a few ulps of the loss.
            np.testing.assert_allclose(fast, plain, rtol=1e-13, atol=1e-14)


def test_every_strategy_gives_the_same_verdict_and_a_bug_is_localized() -> None:
    params, x, y = mlp([4, 4, 3])

    def buggy(p: dict[str, Any], x: Any, y: Any) -> Any:
        h = tanh_layer("factor 2")(x, p["layer0"]["w"], p["layer0"]["b"])
        return xent(h @ p["layer1"]["w"] + p["layer1"]["b"], y)

    for strategy in ("structured", "vmap", "loop"):
        report = check_model(buggy, params, x, y, strategy=strategy)
        assert not report.passed
        assert [n for n, r in report.parameters.items() if not r.passed] == ["params['layer0']['w']"]
        assert report.hints == ["params['layer0']['w']: analytic = 2.00 x numeric"]
        assert report.notes[0].startswith(f"strategy: {strategy}")


def test_a_jitted_loss_and_the_options_of_the_engine() -> None:
    params, x, y = mlp([6, 8, 3])
    loss = jax.jit(mlp_loss)
    assert check_model(loss, params, x, y, sample=0.5, seed=1).sampled
    screened = check_model(loss, params, x, y, screen=True)
    assert screened.passed and any("directional screen" in n for n in screened.notes)
    assert check_model(loss, params, x, y, method="richardson", chunk=7).passed


def test_the_params_are_never_modified() -> None:
    params, x, y = mlp([5, 4, 2])
    numpy_params = jax.tree_util.tree_map(np.array, params)
    saved = jax.tree_util.tree_map(np.copy, numpy_params)
    check_model(mlp_loss, numpy_params, x, y)
    for a, b in zip(jax.tree_util.tree_leaves(numpy_params), jax.tree_util.tree_leaves(saved), strict=True):
        assert np.array_equal(a, b)


def test_no_copy_of_the_params_outlives_the_check() -> None:
    import gc

    params, x, y = mlp([64, 256, 10], seed=3)  # 19,210 parameters: a copy of them is 77 kB
    size = sum(a.nbytes for a in jax.tree_util.tree_leaves(params))

    def live_bytes() -> int:
        gc.collect()
        return sum(a.nbytes for a in jax.live_arrays())

    before = live_bytes()
    report = check_model(mlp_loss, params, x, y)
    after = live_bytes()
    assert report.passed
    # Every perturbed copy, device copy and gradient was dropped: less than one copy of the params is left
    # (jit caches may keep a constant or two, a few bytes each).
    assert after - before < size / 4


def test_import_preflight_never_imports_jax() -> None:
    import subprocess
    import sys

    code = (
        "import sys, preflight, preflight.check, preflight.nn, preflight.init, preflight.propagation, preflight.tour\n"
        "print(sorted(m for m in ('jax', 'jaxlib', 'flax', 'equinox') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_flax_linen_nnx_and_equinox_models() -> None:
    flax = pytest.importorskip("flax")
    eqx = pytest.importorskip("equinox")
    from flax import linen, nnx

    x = jnp.linspace(-1.0, 1.0, 40).reshape(8, 5)
    y = jnp.arange(8) % 3

    class Linen(linen.Module):
        @linen.compact
        def __call__(self, x: Any) -> Any:
            return linen.Dense(3)(linen.relu(linen.Dense(6)(x)))

    model = Linen()
    variables = model.init(jax.random.key(0), x)
    report = check_model(lambda v, x, y: xent(model.apply(v, x), y), variables, x, y)
    assert report.passed and "params['params']['Dense_0']['kernel']" in report.parameters

    class Nnx(nnx.Module):
        def __init__(self, rngs: Any) -> None:
            self.l1, self.l2 = nnx.Linear(5, 6, rngs=rngs), nnx.Linear(6, 3, rngs=rngs)

        def __call__(self, x: Any) -> Any:
            return self.l2(jnp.tanh(self.l1(x)))

    net = Nnx(nnx.Rngs(0))
    report = check_model(lambda m, x, y: xent(m(x), y), net, x, y)
    assert report.passed and any("flax.nnx" in n for n in report.notes)
    assert len(report.parameters) == 4

    emodel = eqx.nn.MLP(5, 3, 6, 1, activation=jnp.tanh, key=jax.random.key(1))
    report = check_model(lambda m, x, y: xent(jax.vmap(m)(x), y), emodel, x, y)
    assert report.passed and "params.layers[0].weight" in report.parameters
    assert flax is not None


def test_a_random_loss_and_bad_arguments_are_clear_errors() -> None:
    params, x, y = mlp([4, 3])

    def noisy(p: Any, x: Any, y: Any) -> Any:
        draw = jax.pure_callback(lambda: np.float32(np.random.default_rng().random()),
                                 jax.ShapeDtypeStruct((), jnp.float32))  # fmt: skip
        return mlp_loss(p, x, y) * (1 + 1e-3 * draw)

    with pytest.raises(NondeterministicLossError, match=r"jax\.random\.key"):
        check_model(noisy, params, x, y)
    with pytest.raises(ValueError, match="loss_fn: expected a callable"):
        check_model("loss", params, x, y)
    with pytest.raises(ValueError, match="strategy"):
        check_model(mlp_loss, params, x, y, strategy="fast")
    with pytest.raises(ValueError, match="bfloat16"):
        check_model(mlp_loss, jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), params), x, y)
    with pytest.raises(ValueError, match="scalar"):
        check_model(lambda p, x, y: x @ p["layer0"]["w"], params, x, y)


def test_a_missing_one_over_m_is_named_with_the_batch_size() -> None:
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.standard_normal((4, 3)), jnp.float32)}
    x = jnp.asarray(rng.standard_normal((16, 4)), jnp.float32)

    @jax.custom_vjp
    def mean_tanh(x: Any, w: Any) -> Any:
        return jnp.sum(jnp.tanh(x @ w)) / x.shape[0]

    def backward(saved: Any, g: Any) -> Any:
        x, w = saved
        return None, g * x.T @ (1 - jnp.tanh(x @ w) ** 2)  # the bug: no / m

    mean_tanh.defvjp(lambda x, w: (mean_tanh(x, w), (x, w)), backward)
    report = check_model(lambda p, x: mean_tanh(x, p["w"]), params, x)
    assert report.hints == ["params['w']: analytic = 16.00 x numeric (a missing 1/m with m = 16?)"]


def _architectures() -> dict[str, Any]:
    from jax import lax

    rng = np.random.default_rng(0)

    def n(*shape: int) -> Any:
        return jnp.asarray(rng.standard_normal(shape))

    def norm(h: Any) -> Any:
        return (h - h.mean(-1, keepdims=True)) / jnp.sqrt(h.var(-1, keepdims=True) + 1e-5)

    def rnn(p: Any, x: Any) -> Any:
        return jnp.sum(lax.scan(lambda h, xt: (jnp.tanh(h @ p["u"] + xt @ p["w"]),) * 2, jnp.zeros(3), x)[0])

    def conv(p: Any, x: Any) -> Any:
        z = lax.conv_general_dilated(x, p["k"], (1, 1), "SAME") + p["b"][None, :, None, None]
        return jnp.sum(jax.nn.relu(z) ** 2)

    return {  # name: (loss, params, batch); every one a weight meeting a product in a different way
        "residual, tied weight": (lambda p, x: jnp.sum(jnp.tanh(x + jnp.tanh(x @ p["w"]) @ p["w"].T) ** 2),
                                  {"w": n(4, 4)}, n(6, 4)),
        "layer norm, gelu": (lambda p, x: jnp.sum(jax.nn.gelu(norm(x @ p["w"]) * p["g"] + p["b"]) ** 2),
                             {"w": n(4, 5), "g": n(5), "b": n(5)}, n(6, 4)),
        "attention": (lambda p, x: jnp.sum(jax.nn.softmax((x @ p["q"]) @ (x @ p["k"]).T / 2.0) @ (x @ p["v"])),
                      {"q": n(4, 3), "k": n(4, 3), "v": n(4, 2)}, n(6, 4)),
        "convolution, relu": (conv, {"k": n(4, 3, 3, 3), "b": n(4)}, n(2, 3, 6, 6)),
        "weight as left operand": (lambda p, x: jnp.sum(jnp.tanh(p["w"] @ x[0] + p["v"] @ p["w"]) ** 2),
                                   {"w": n(4, 4), "v": n(4)}, n(6, 4)),
        "scan (an RNN)": (rnn, {"u": n(3, 3), "w": n(4, 3)}, n(6, 4)),
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", ["residual, tied weight", "layer norm, gelu", "attention", "convolution, relu",
                                  "weight as left operand", "scan (an RNN)"])  # fmt: skip
def test_the_structured_evaluator_equals_plain_evaluations_on_other_architectures(name: str) -> None:
    with jax.enable_x64(True):
        loss, params, x = _architectures()[name]
        tree = split(params, "params")
        of_leaves = tree.bind(loss)
        leaves = [jnp.asarray(a) for a in tree.arrays]
        for k, a in enumerate(tree.arrays):
            index = jnp.arange(a.size, dtype=jnp.int32)
            values = jnp.asarray(a.reshape(-1) + 0.01 * (1 + np.arange(a.size) % 3))
            fast = jax.jit(structured_losses(of_leaves, k))(leaves, index, values, x)
            plain = jax.jit(_vmapped_losses(of_leaves, k))(leaves, index, values, x)
            np.testing.assert_allclose(fast, plain, rtol=1e-13)  # rounding of the two orders of summation only
