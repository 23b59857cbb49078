"""The structure-aware evaluator of the reference network agrees with ``Network.cost`` on perturbed copies."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import pytest

import preflight
from preflight.check.engine import NondeterministicLossError
from preflight.nn import Network
from preflight.nn.activations import ACTIVATIONS
from preflight.nn.bugs import BuggyNetwork
from preflight.nn.fast_check import check_network, perturbed_costs
from preflight.nn.heads import HEADS
from preflight.nn.series import coth_bound, series_terms, tanh_series

DTYPES = [np.float64, np.float32]
#: Agreement with net.cost, in units of the dtype's eps, relative to the cost. The two computations round
#: differently (a rank-one update of Z_l instead of the full product, the addition theorem of tanh instead of
#: np.tanh, sums in another order), each by a few ulps of the terms of a sum of positive losses: measured at most
#: 2.5 eps over every activation x head x dtype here. 64 eps leaves room for other seeds, while a move applied to
#: the wrong coordinate changes the cost by far more (h |dcost/dtheta| ~ 1e-7 relative at the float64 step,
#: 1e-4 at the float32 step, ~1e-2 at the large offsets).
RTOL_EPS = 64
M = 9


def make_problem(sizes: list[int], hidden: str, head: str, dtype: Any, *, keep_prob: float = 1.0, seed: int = 0):
    net = Network(sizes, hidden=hidden, output=head, l2=0.3, keep_prob=keep_prob)
    rng = np.random.default_rng(seed)
    # Random (not initial) parameters: nonzero biases, weights of order 1, so every unit matters.
    params = {n: (0.6 * rng.standard_normal(s)).astype(dtype) for n, s in net.shapes().items()}
    X = rng.standard_normal((M, sizes[0]))
    if head == "softmax":
        y = rng.integers(0, sizes[-1], M)
    elif head == "sigmoid":
        y = rng.integers(0, 2, (M, sizes[-1]))
    else:
        y = rng.standard_normal((M, sizes[-1]))
    masks = net.dropout_masks(seed + 1, M) if keep_prob < 1 else None
    return net, params, X, y, masks


def offsets_of(params: dict[str, np.ndarray], scale: float, seed: int) -> dict[str, np.ndarray]:
    """Offsets of both signs around ``scale`` (times max(1, |theta|), like a gradient-check step)."""
    rng = np.random.default_rng(seed)
    return {
        n: (
            scale * rng.choice([-1.0, 1.0], v.shape) * rng.uniform(0.5, 1.5, v.shape) * np.maximum(1, np.abs(v))
        ).astype(v.dtype)
        for n, v in params.items()
    }


def assert_matches_cost(net, params, X, y, masks, offsets, *, per_tensor: int = 4, seed: int = 0) -> None:
    costs = perturbed_costs(net, params, X, y, offsets, masks=masks)
    rng = np.random.default_rng(seed)
    eps = float(np.finfo(next(iter(params.values())).dtype).eps)
    for name, value in params.items():
        assert costs[name].shape == value.shape and costs[name].dtype == np.float64
        for flat in rng.choice(value.size, size=min(per_tensor, value.size), replace=False):
            idx = np.unravel_index(flat, value.shape)
            moved = {n: v.copy() for n, v in params.items()}
            moved[name][idx] += offsets[name][idx]
            expected = net.cost(moved, X, y, masks=masks)
            assert costs[name][idx] == pytest.approx(expected, rel=RTOL_EPS * eps), (name, idx)


CASES = list(itertools.product(ACTIVATIONS, HEADS, DTYPES))


@pytest.mark.parametrize(("hidden", "head", "dtype"), CASES)
def test_matches_cost_at_gradient_check_steps(hidden: str, head: str, dtype: Any) -> None:
    # Steps of cbrt(eps): the regime of a gradient check, where tanh and sigmoid take the addition-theorem path.
    net, params, X, y, _ = make_problem([4, 6, 5, 3], hidden, head, dtype)
    steps = offsets_of(params, float(np.cbrt(np.finfo(dtype).eps)), seed=1)
    assert_matches_cost(net, params, X, y, None, steps)


@pytest.mark.parametrize(("hidden", "head", "dtype"), CASES)
def test_matches_cost_at_large_offsets_with_dropout(hidden: str, head: str, dtype: Any) -> None:
    # Offsets of order 0.3: activations evaluated directly; frozen dropout masks scale kept units by 1/keep_prob.
    net, params, X, y, masks = make_problem([4, 6, 5, 3], hidden, head, dtype, keep_prob=0.7)
    assert_matches_cost(net, params, X, y, masks, offsets_of(params, 0.3, seed=2))


@pytest.mark.parametrize("sizes", [[3, 2], [4, 5, 2], [5, 6, 7, 5, 3]])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e-4, 0.3])
def test_matches_cost_at_every_depth(sizes: list[int], dtype: Any, scale: float) -> None:
    # No hidden layer, one (the move reaches the head by a rank-one term), three (batched through hidden layers).
    net, params, X, y, masks = make_problem(sizes, ["tanh", "sigmoid", "relu"][: len(sizes) - 2], "softmax", dtype)
    assert_matches_cost(net, params, X, y, masks, offsets_of(params, scale, seed=3), per_tensor=6)


@pytest.mark.parametrize("hidden", ["tanh", "sigmoid"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_unmoved_samples_and_zero_weights_are_exact(hidden: str, dtype: Any) -> None:
    # A zero input moves no pre-activation of its sample, and a zero weight carries no change: coth u is infinite
    # there, which the rank-one path must turn into an exact 0 (no NaN, no warning).
    net, params, X, y, _ = make_problem([4, 6, 5, 3], hidden, "softmax", dtype)
    X[:3, 0] = 0.0
    params["W2"][1, :] = 0.0
    params["W2"][:, 2] = 0.0
    steps = offsets_of(params, float(np.cbrt(np.finfo(dtype).eps)), seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_matches_cost(net, params, X, y, None, steps, per_tensor=30)


def test_batches_of_one_give_the_same_costs(monkeypatch: pytest.MonkeyPatch) -> None:
    net, params, X, y, _ = make_problem([4, 6, 5, 3], "tanh", "softmax", np.float64)
    steps = offsets_of(params, 1e-5, seed=4)
    batched = perturbed_costs(net, params, X, y, steps)
    monkeypatch.setattr("preflight.nn.fast_check.BATCH_BYTES", 1)
    one_by_one = perturbed_costs(net, params, X, y, steps)
    for name in params:
        # Same arithmetic per copy; only BLAS's blocking may differ with the number of rows: a few ulps.
        np.testing.assert_allclose(one_by_one[name], batched[name], rtol=RTOL_EPS * np.finfo(np.float64).eps)


def test_zero_offsets_give_the_unperturbed_cost_and_params_are_untouched() -> None:
    net, params, X, y, _ = make_problem([4, 6, 3], "relu", "sigmoid", np.float32)
    before = {n: v.copy() for n, v in params.items()}
    offsets = {n: np.zeros_like(v) for n, v in params.items()}
    offsets["W1"][2, 1] = 0.5
    # Below half an ulp of the parameter: the moved value rounds back to it, so the cost is the unperturbed one.
    offsets["b1"][0] = np.float32(1e-12)
    costs = perturbed_costs(net, params, X, y, offsets)
    f0 = net.cost(params, X, y)
    assert costs["b2"].tolist() == [f0] * 3
    assert costs["b1"][0] == f0
    assert costs["W1"][2, 1] != f0 and np.count_nonzero(costs["W1"] != f0) == 1
    for name, value in params.items():
        assert value.tobytes() == before[name].tobytes()


def test_only_the_named_tensors_are_returned() -> None:
    net, params, X, y, _ = make_problem([4, 6, 3], "tanh", "softmax", np.float64)
    assert list(perturbed_costs(net, params, X, y, {"b2": np.ones(3)})) == ["b2"]


@pytest.mark.parametrize(
    ("offsets", "message"),
    [
        ({"W9": np.zeros(3)}, "expected names among"),
        ({"b2": np.zeros(4)}, r"offsets\['b2'\]: expected a real array of shape \(3,\)"),
        ({"b2": np.array([0.0, np.nan, 0.0])}, r"offsets\['b2'\]: expected finite values"),
    ],
)
def test_invalid_offsets_are_named(offsets: dict[str, np.ndarray], message: str) -> None:
    net, params, X, y, _ = make_problem([4, 6, 3], "tanh", "softmax", np.float64)
    with pytest.raises(ValueError, match=message):
        perturbed_costs(net, params, X, y, offsets)


def test_dropout_needs_frozen_masks() -> None:
    net, params, X, y, _ = make_problem([4, 6, 3], "tanh", "softmax", np.float64, keep_prob=0.8)
    with pytest.raises(ValueError, match="masks: expected frozen dropout masks"):
        perturbed_costs(net, params, X, y, {"b2": np.ones(3)})
    with pytest.raises(NondeterministicLossError, match=r"masks=net\.dropout_masks"):
        check_network(net, params, X, y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_series_of_tanh_is_exact_where_it_is_used(dtype: Any) -> None:
    # tanh from 2 or 3 terms of its series, on a grid up to the largest |u| each is allowed for, against np.tanh.
    eps = float(np.finfo(dtype).eps)
    for terms in (2, 3):
        bound = (7.5 * eps / 2) ** 0.25 if terms == 2 else (315 * eps / 34) ** (1 / 6)
        assert series_terms(bound, np.dtype(dtype)) == terms
        u = np.linspace(-bound, bound, 20001).astype(dtype)
        t = tanh_series(u, terms, out=np.empty_like(u), scratch=np.empty_like(u))
        ulp = np.spacing(np.abs(np.tanh(u)))
        # Truncation is below half an ulp; evaluating the polynomial rounds 3 times (at most 1.5 ulp); np.tanh is
        # within an ulp of the truth.
        assert np.max(np.abs(t - np.tanh(u)) / ulp) <= 3.0
    assert series_terms(0.5, np.dtype(dtype)) == 0
    # coth u = 1/u + u/3 - u^3/45 up to its bound (away from 0, where np.tanh's own ulp would dominate 1/tanh).
    # Truncation below half an ulp, the series' 4 roundings and the reference's 2: at most 4 ulps apart.
    u = np.linspace(coth_bound(np.dtype(dtype)) / 8, coth_bound(np.dtype(dtype)), 2001).astype(dtype)
    series = 1 / u + u / 3 - u**3 / 45
    assert np.max(np.abs(series - 1 / np.tanh(u)) / np.spacing(series)) <= 4.0


def test_structure_aware_check_passes_a_correct_network_and_names_a_planted_bug() -> None:
    net, params, X, y, masks = make_problem([4, 6, 5, 3], "tanh", "softmax", np.float64, keep_prob=0.8)
    report = preflight.nn.gradcheck(net, params, X, y, masks=masks)
    assert report.passed and report.difference < 1e-7
    buggy = BuggyNetwork([4, 6, 5, 3], hidden="tanh", output="softmax", l2=0.3, bug="factor-2")
    report = preflight.nn.gradcheck(buggy, params, X, y)
    assert not report.passed and report.worst == "W2"
    assert any("W2" in hint and "2.00" in hint for hint in report.hints)


@pytest.mark.parametrize("dtype", DTYPES)
def test_structure_aware_and_black_box_checks_agree(dtype: Any) -> None:
    net, params, X, y, _ = make_problem([4, 6, 5, 3], "sigmoid", "sigmoid", dtype)
    ours = preflight.nn.gradcheck(net, params, X, y)
    box = preflight.gradcheck(lambda p: net.cost(p, X, y), params, net.gradients(params, X, y))
    assert ours.passed and box.passed
    # Both differences are rounding: of order eps / step = cbrt(eps)^2 relative (1e-11 in float64, 2e-5 in float32).
    bound = 100 * np.cbrt(np.finfo(dtype).eps) ** 2
    assert ours.difference < bound and box.difference < bound
