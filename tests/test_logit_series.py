"""The logits' power series (preflight.nn.logit_series): the perturbed costs it gives equal the network's own cost
at every moved coordinate, to the rounding of the cost, and it steps aside where it would not be exact."""

from __future__ import annotations

import numpy as np
import pytest

from preflight.nn import Network
from preflight.nn.fast_check import NetworkPerturbedLoss
from preflight.nn.logit_series import MAX_ORDER, LogitSeries, tanh_shift_coefficients


def _problem(
    hidden: str, dtype: str, output: str = "softmax"
) -> tuple[Network, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    sizes = [12, 9, 7, 4 if output == "softmax" else 1]
    net = Network(sizes, hidden=hidden, output=output, l2=0.01)
    rng = np.random.default_rng(3)
    params = {n: (v + 0.1 * rng.standard_normal(v.shape)).astype(dtype) for n, v in net.init(rng).items()}
    X = rng.standard_normal((16, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], 16) if output == "softmax" else rng.integers(0, 2, 16)
    return net, params, X, y


def _one_by_one(
    net: Network, params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, name: str, step: float
) -> np.ndarray:
    out = np.empty(params[name].size)
    for i in range(out.size):
        moved = {n: v.copy() for n, v in params.items()}
        moved[name].reshape(-1)[i] += step
        out[i] = net.cost(moved, X, y)
    return out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("hidden", "output"), [("tanh", "softmax"), ("sigmoid", "softmax"), ("tanh", "sigmoid")])
def test_series_costs_equal_the_network_cost(hidden: str, output: str, dtype: str) -> None:
    net, params, X, y = _problem(hidden, dtype, output)
    step = float(np.cbrt(np.finfo(dtype).eps))  # the checker's own step
    evaluator = NetworkPerturbedLoss(net, params, X, y)
    assert evaluator._series(1) is not None  # layer 1 feeds the last hidden layer: the series applies
    for sign in (1.0, -1.0):
        offsets = {n: np.full(params[n].shape, sign * step, dtype=dtype) for n in ("W1", "b1")}
        costs = evaluator(offsets)
        for name in offsets:
            expected = _one_by_one(net, params, X, y, name, sign * step)
            # Both are the cost to its rounding: a few ulps of the cost apart (summation orders differ).
            assert np.max(np.abs(costs[name].reshape(-1) - expected)) <= 8 * np.finfo(dtype).eps * abs(expected).max()


def test_series_steps_aside_for_large_moves() -> None:
    net, params, X, y = _problem("tanh", "float64")
    evaluator = NetworkPerturbedLoss(net, params, X, y)
    series = evaluator._series(1)
    assert series is not None and series.order(10.0) == 0 and 1 <= series.order(1e-6) <= MAX_ORDER
    offsets = {"W1": np.full(params["W1"].shape, 0.5)}
    expected = _one_by_one(net, params, X, y, "W1", 0.5)
    np.testing.assert_allclose(evaluator(offsets)["W1"].reshape(-1), expected, rtol=1e-13)


def test_series_not_used_with_dropout_or_relu() -> None:
    net, params, X, y = _problem("relu", "float64")
    assert NetworkPerturbedLoss(net, params, X, y)._series(1) is None
    dropout = Network([12, 9, 7, 4], hidden="tanh", output="softmax", keep_prob=0.8)
    masks = dropout.dropout_masks(0, 16)
    assert NetworkPerturbedLoss(dropout, params, X, y, masks=masks)._series(1) is None


def test_shift_coefficients_are_the_taylor_coefficients_of_tanh() -> None:
    z, u = 0.7, 1e-3
    polys = tanh_shift_coefficients(6)
    series = sum(np.polynomial.polynomial.polyval(np.tanh(z), c) * u ** (p + 1) for p, c in enumerate(polys))
    assert abs(np.tanh(z) + series - np.tanh(z + u)) < 4e-16  # two ulps of tanh: the terms after u^6 are ~1e-21


def test_series_direct_against_exact_change() -> None:
    rng = np.random.default_rng(1)
    hidden, weights, output = np.tanh(rng.normal(size=(5, 6))), rng.normal(size=(6, 3)), rng.normal(size=(2, 6))
    c = 1e-4 * rng.normal(size=(3, 5))
    units = np.array([0, 2, 2])
    got = LogitSeries(hidden, weights, output, sigmoid=False).changes(units, c)
    z = np.arctanh(hidden)
    for k, unit in enumerate(units):
        exact = (np.tanh(z + c[k][:, None] * weights[:, unit]) - hidden) @ output.T
        np.testing.assert_allclose(got[:, k, :], exact.T, rtol=0, atol=1e-15)
