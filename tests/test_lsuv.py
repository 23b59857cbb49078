"""LSUV: orthogonal pre-initialization, then every layer's output scaled to unit variance on the batch."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from preflight import propagation
from preflight.init import LSUVWarning, lsuv
from preflight.nn import Network

DTYPES = [np.float32, np.float64]


def batch(m: int = 300, n: int = 20, scale: float = 4.0) -> np.ndarray:
    # Deliberately far from unit variance, so the first layer has to be rescaled.
    return np.random.default_rng(1).standard_normal((m, n)) * scale + 1.0


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("hidden", ["relu", "tanh", "sigmoid", "leaky_relu"])
def test_every_layer_output_has_unit_variance_on_the_batch(hidden: str, dtype: type) -> None:
    net = Network([20, 64, 48, 32, 5], hidden=hidden, output="softmax")
    X = batch()
    result = lsuv(net, X, 0, tol=0.05, dtype=dtype)
    assert result.converged and len(result.layers) == net.depth
    trace = net.trace(result.params, X.astype(dtype))
    for record, z in zip(result.layers, trace.logits, strict=True):
        # Recomputed independently through the network's own forward pass; float32 variance within ~1e-6.
        assert np.var(z, dtype=np.float64) == pytest.approx(record.variance_after, rel=1e-4)
        assert abs(record.variance_after - 1.0) <= 0.05
        assert 0 <= record.iterations <= 10
    assert all(v.dtype == dtype for v in result.params.values())
    assert not any(result.params[f"b{layer}"].any() for layer in range(1, net.depth + 1))


def test_weights_stay_scaled_orthogonal() -> None:
    net = Network([20, 64, 16, 3], hidden="relu", output="softmax")
    params = lsuv(net, batch(), 0).params
    for layer in range(1, net.depth + 1):
        w = params[f"W{layer}"]
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        # Scaling by a positive constant keeps orthogonality: gram = c^2 I, exactly up to float64 rounding.
        np.testing.assert_allclose(gram, gram[0, 0] * np.eye(len(gram)), atol=1e-12 * gram[0, 0])


def test_first_records_show_the_rescaling() -> None:
    net = Network([20, 30, 2], hidden="tanh", output="sigmoid")
    result = lsuv(net, batch(scale=4.0), 0)
    first = result.layers[0]
    # Orthogonal 30 x 20 weights keep the squared norm of each input (mean square ~17) across 30 outputs: the
    # variance is about 20/30 of the input's second moment, far above 1.
    assert first.variance_before > 5 and first.iterations >= 1 and first.converged
    assert result.to_dict()["layers"][0]["layer"] == 1 and json.loads(result.to_json())["converged"] == result.converged


def test_same_seed_same_parameters_and_input_untouched() -> None:
    net = Network([20, 16, 16, 2], hidden="relu", output="softmax")
    X = batch()
    before = X.copy()
    a, b = lsuv(net, X, 7).params, lsuv(net, X, 7).params
    assert all(np.array_equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(X, before)


def test_a_constant_batch_warns_instead_of_dividing_by_zero() -> None:
    net = Network([4, 8, 2], hidden="relu", output="softmax")
    with pytest.warns(LSUVWarning) as caught:
        result = lsuv(net, np.zeros((10, 4)), 0)
    assert [str(w.message).split(" ends")[0] for w in caught] == ["LSUV: layer 1", "LSUV: layer 2"]
    assert all("constant on the batch" in str(w.message) for w in caught)
    assert not result.converged and np.isfinite(result.params["W1"]).all()


def test_lsuv_makes_a_deep_relu_network_healthy() -> None:
    net = Network([20] + [64] * 30 + [4], hidden="relu", output="softmax")
    X = batch(m=256)
    y = np.random.default_rng(2).integers(0, 4, 256)
    report = propagation.analyze(net, lsuv(net, X, 0).params, X, y)
    assert report.verdict == "healthy"


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"tol": 0.0}, "tol"), ({"max_iterations": 0}, "max_iterations"), ({"tol": 1.5}, "tol")],
)
def test_bad_arguments(kwargs: dict[str, float], argument: str) -> None:
    with pytest.raises(ValueError, match=rf"^{argument}"):
        lsuv(Network([20, 4, 2]), batch(), 0, **kwargs)  # type: ignore[arg-type]


def test_batch_must_fit_the_network() -> None:
    with pytest.raises(ValueError, match=r"^X: expected at least 2 rows and 20 columns"):
        lsuv(Network([20, 4, 2]), np.ones((5, 3)), 0)


def test_a_batch_of_small_scale_is_rescaled_not_taken_for_constant() -> None:
    # The old test was absolute (variance <= 1e-12): inputs of scale 1e-6 were "constant" and left alone.
    net = Network([8, 32, 32, 2], hidden="tanh", output="softmax")
    X = np.random.default_rng(0).standard_normal((200, 8)) * 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = lsuv(net, X, 0)
    assert result.converged and all(abs(r.variance_after - 1.0) <= 0.1 for r in result.layers)


def test_identical_rows_are_constant_on_the_batch_and_an_overflow_is_named() -> None:
    net = Network([8, 16, 2], hidden="tanh", output="softmax")
    row = np.random.default_rng(1).standard_normal((1, 8))
    with pytest.warns(LSUVWarning, match="constant on the batch"):
        assert not lsuv(net, np.repeat(row, 20, axis=0), 0).converged
    with pytest.warns(LSUVWarning, match="overflows float64: scale the batch down"):
        assert not lsuv(net, np.random.default_rng(2).standard_normal((20, 8)) * 1e200, 0).converged
