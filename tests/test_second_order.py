"""Second-order checks in NumPy: Network.hvp (the R-operator) against torch, and gradcheck(..., hvp=...) catching and
locating planted Hessian-vector-product bugs while passing correct ones (float64 and float32)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from preflight import gradcheck
from preflight.check import second_order
from preflight.nn import ACTIVATIONS, HEADS, HVP_BUGS, BuggyNetwork, Network
from preflight.nn.bugs import broken_tensors

from .oracle import network_problem, torch_cost

DTYPES = [np.float64, np.float32]


def problem(net: Network, dtype: Any, seed: int, m: int = 8) -> tuple[dict[str, np.ndarray], np.ndarray, Any, Any]:
    return network_problem(net, dtype, seed, m, init="lecun")


def check(net: Network, params: Any, X: Any, y: Any, masks: Any = None, **options: Any) -> Any:
    return gradcheck(
        lambda p: net.cost(p, X, y, masks=masks),
        params,
        lambda p: net.gradients(p, X, y, masks=masks),
        hvp=lambda p, v: net.hvp(p, X, y, v, masks=masks),
        **options,
    )


# ---------------------------------------------------------------------------------------------- Network.hvp vs torch


def targets(net: Network, y: Any, m: int) -> np.ndarray:
    if net.output == "softmax":
        return np.eye(net.sizes[-1])[y]
    return np.asarray(y, dtype=np.float64).reshape(m, -1)


@pytest.mark.parametrize(("hidden", "output"), list(itertools.product(ACTIVATIONS, HEADS)))
def test_network_hvp_matches_torch_to_1e_12_for_every_activation_and_head(hidden: str, output: str) -> None:
    torch = pytest.importorskip("torch")
    net = Network([4, 6, 5, 3], hidden=hidden, output=output, l2=0.7)
    for seed in range(2):
        params, X, y, _ = problem(net, np.float64, seed)
        v = {k: np.random.default_rng(seed + 9).standard_normal(p.shape) for k, p in params.items()}
        ours = net.hvp(params, X, y, v)
        cost = torch_cost(net, X, targets(net, y, X.shape[0]), None)
        _, theirs = torch.autograd.functional.hvp(
            cost, tuple(torch.from_numpy(params[n]) for n in params), tuple(torch.from_numpy(v[n]) for n in params)
        )
        a = np.concatenate([ours[n].ravel() for n in params])
        t = np.concatenate([h.numpy().ravel() for h in theirs])
        # Both are exact H v up to float64 rounding of the same products: measured here ~3e-16.
        assert np.linalg.norm(a - t) / np.linalg.norm(t) < 1e-12
        assert all(ours[n].dtype == np.float64 and ours[n].shape == params[n].shape for n in params)


def test_network_hvp_with_frozen_dropout_and_in_columns_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    net = Network([3, 5, 4, 2], hidden="tanh", output="softmax", l2=0.3, keep_prob=0.7)
    params, X, y, masks = problem(net, np.float64, 3, m=6)
    v = {k: np.random.default_rng(1).standard_normal(p.shape) for k, p in params.items()}
    ours = net.hvp(params, X, y, v, masks=masks)
    cost = torch_cost(net, X, targets(net, y, 6), masks)
    _, theirs = torch.autograd.functional.hvp(
        cost, tuple(torch.from_numpy(params[n]) for n in params), tuple(torch.from_numpy(v[n]) for n in params)
    )
    for name, h in zip(params, theirs, strict=True):
        np.testing.assert_allclose(ours[name], h.numpy(), rtol=1e-12, atol=1e-14)
    columns = Network([3, 5, 4, 2], hidden="tanh", output="softmax", l2=0.3, keep_prob=0.7, layout="columns")
    in_columns = {k: (p.reshape(-1, 1) if k[0] == "b" else p) for k, p in params.items()}
    v_columns = {k: (p.reshape(-1, 1) if k[0] == "b" else p) for k, p in v.items()}
    col_masks = tuple(mask.T for mask in masks)
    got = columns.hvp(in_columns, X.T, y, v_columns, masks=col_masks)
    assert got["b1"].shape == (5, 1)
    for name in params:
        np.testing.assert_allclose(got[name].reshape(ours[name].shape), ours[name], rtol=1e-13, atol=1e-15)


def test_network_hvp_rejects_a_bad_direction_and_a_random_cost() -> None:
    net = Network([3, 4, 2], hidden="tanh", output="softmax")
    params, X, y, _ = problem(net, np.float64, 0)
    v = {k: np.ones_like(p) for k, p in params.items()}
    with pytest.raises(ValueError, match=r"v\['W1'\]: expected a numeric array of shape \(4, 3\)"):
        net.hvp(params, X, y, {**v, "W1": np.ones((3, 4))})
    with pytest.raises(ValueError, match="v: expected a dict with the keys of params"):
        net.hvp(params, X, y, {"W1": v["W1"]})
    with pytest.raises(ValueError, match=r"v\['b2'\]: expected finite values"):
        net.hvp(params, X, y, {**v, "b2": np.full(2, np.nan)})
    dropout = Network([3, 4, 2], hidden="tanh", output="softmax", keep_prob=0.5)
    with pytest.raises(ValueError, match="masks: expected frozen dropout masks"):
        dropout.hvp(params, X, y, v)


def test_network_hvp_keeps_float32() -> None:
    net = Network([3, 4, 2], hidden="sigmoid", output="sigmoid", l2=0.1)
    params, X, y, _ = problem(net, np.float32, 0)
    v = {k: np.ones(p.shape) for k, p in params.items()}  # float64 direction: cast to the parameters' dtype
    assert {h.dtype for h in net.hvp(params, X, y, v).values()} == {np.dtype(np.float32)}


# ------------------------------------------------------------------------------- gradcheck(..., hvp=...): correct


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("hidden", "output"), list(itertools.product(ACTIVATIONS, HEADS)))
def test_a_correct_hvp_passes_for_every_activation_head_and_dtype(hidden: str, output: str, dtype: Any) -> None:
    net = Network([3, 4, 3, 2], hidden=hidden, output=output, l2=0.5)
    report = check(net, *problem(net, dtype, 0))
    assert report.passed, str(report)
    assert report.second_order is not None
    assert set(report.second_order) == {
        "H v, v random",
        *(f"H v, v along {n}" for n in net.shapes()),
        *(f"H[:, {n}]" for n in net.shapes()),
    }
    total = sum(int(np.prod(s)) for s in net.shapes().values())
    # Every column of the Hessian is judged (all but the entries set aside at kinks).
    columns = sum(r.size for n, r in report.second_order.items() if n.startswith("H[:"))
    assert columns == total * total


@pytest.mark.parametrize("seed", range(5))
def test_a_float32_relu_network_at_batch_64_raises_no_false_alarm(seed: int) -> None:
    """Each column moves every sample's pre-activations; in float32 (step 5e-3) some cross 0 within the stencil."""
    net = Network([4, 8, 3], hidden="relu", output="softmax")
    report = check(net, *problem(net, np.float32, seed, m=64))
    assert report.passed, str(report)


def test_with_dropout_masks_and_l2_it_passes() -> None:
    net = Network([3, 5, 4, 2], hidden="tanh", output="softmax", l2=0.3, keep_prob=0.7)
    assert check(net, *problem(net, np.float64, 1)).passed


def test_the_parameters_are_restored_bit_for_bit() -> None:
    net = Network([3, 4, 2], hidden="tanh", output="linear")
    params, X, y, _ = problem(net, np.float32, 2)
    before = {k: v.copy() for k, v in params.items()}
    check(net, params, X, y)
    assert all(np.array_equal(params[k], before[k]) and params[k].dtype == np.float32 for k in params)


def test_above_the_full_hessian_limit_columns_are_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(second_order, "FULL_HESSIAN", 20)
    monkeypatch.setattr(second_order, "SAMPLED_COLUMNS", 10)
    net = Network([3, 6, 2], hidden="tanh", output="softmax")
    report = check(net, *problem(net, np.float64, 0))
    assert report.passed
    assert any("sampled Hessian columns of 38" in n for n in report.notes), report.notes
    assert report.second_order is not None
    assert report.second_order["H[:, W1]"].size == 16 * 38  # at least 16 columns per tensor


# ----------------------------------------------------------------------------- gradcheck(..., hvp=...): planted bugs


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bug", sorted(HVP_BUGS))
def test_a_planted_hvp_bug_is_caught_and_located_in_its_hessian_blocks(bug: str, dtype: Any) -> None:
    net = BuggyNetwork([4, 5, 4, 3], hidden="tanh", output="softmax", l2=0.5, bug=bug)
    for seed in range(2):
        report = check(net, *problem(net, dtype, seed))
        assert not report.passed, f"{bug} missed (seed {seed})"
        assert all(r.passed for r in report.parameters.values())  # the gradient is right: the first order passes
        assert report.second_order is not None
        broken = broken_tensors(net, bug)
        failing_rows = {
            c.output_name.removeprefix("grad ")
            for r in report.second_order.values()
            for c in r.failing()
            if c.output_name is not None
        }
        assert failing_rows and failing_rows <= broken, failing_rows
        blocks = next(h for h in report.hints if "failing entries lie in the Hessian blocks" in h)
        assert all(f"H[{row}, " in blocks for row in failing_rows)
        assert "second order" in str(report) and "-> grad " in str(report)


def test_a_product_rule_half_applied_makes_the_hessian_asymmetric_and_the_hint_says_so() -> None:
    net = BuggyNetwork([4, 5, 4, 3], hidden="tanh", output="softmax", bug="hvp-product-rule")
    report = check(net, *problem(net, np.float64, 0))
    symmetric = [h for h in report.hints if "not symmetric" in h]
    assert symmetric and "H[W1, W2] vs H[W2, W1]^T" in symmetric[0]


def test_the_curvature_bug_is_invisible_with_relu_where_phi_second_is_zero() -> None:
    """Not a miss: with ReLU the term the bug drops is phi''(z) = 0, so its H v is the true one."""
    net = BuggyNetwork([4, 5, 3], hidden="relu", output="softmax", bug="hvp-activation-curvature")
    assert check(net, *problem(net, np.float64, 0)).passed


def test_a_factor_in_a_hand_written_hessian_is_named() -> None:
    """A plain NumPy loss: sum(softplus(A theta)), with a hand-written H v that doubles the curvature."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 5))

    def sigmoid(z: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    def loss(p: dict[str, np.ndarray]) -> float:
        return float(np.sum(np.logaddexp(0.0, A @ p["theta"])))

    def grads(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"theta": A.T @ sigmoid(A @ p["theta"])}

    def hvp(p: dict[str, np.ndarray], v: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        s = sigmoid(A @ p["theta"])
        return {"theta": 2 * A.T @ (s * (1 - s) * (A @ v["theta"]))}

    report = gradcheck(loss, {"theta": rng.standard_normal(5)}, grads, hvp=hvp)
    assert not report.passed and report.second_order is not None
    assert "second order: (H v)[theta]: analytic = 2.00 x numeric" in report.hints


# ------------------------------------------------------------------------------------- first order first, bad input


def test_a_first_order_failure_is_reported_as_such_and_the_second_order_is_not_checked() -> None:
    net = BuggyNetwork([4, 5, 4, 3], hidden="tanh", output="softmax", bug="factor-2")
    report = check(net, *problem(net, np.float64, 0))
    assert not report.passed
    assert report.second_order is None
    assert any("second order not checked: the first-order check did not pass" in n for n in report.notes)
    assert report.worst == "W2"


def test_bad_second_order_arguments_name_the_argument() -> None:
    net = Network([3, 4, 2], hidden="tanh", output="softmax")
    params, X, y, _ = problem(net, np.float64, 0)
    loss = lambda p: net.cost(p, X, y)  # noqa: E731
    with pytest.raises(ValueError, match="hvp: expected a callable hvp"):
        gradcheck(loss, params, lambda p: net.gradients(p, X, y), hvp=np.ones(3))
    with pytest.raises(ValueError, match=r"grads: the second-order check .* needs it as a callable"):
        gradcheck(loss, params, net.gradients(params, X, y), hvp=lambda p, v: net.hvp(p, X, y, v))
    wrong = lambda p, v: {**net.hvp(p, X, y, v), "W1": np.zeros((2, 2))}  # noqa: E731
    with pytest.raises(ValueError, match=r"hvp: expected H v structured as params, with 'W1' a numeric array"):
        gradcheck(loss, params, lambda p: net.gradients(p, X, y), hvp=wrong)


def test_the_report_carries_the_second_order_in_text_json_and_html() -> None:
    net = BuggyNetwork([3, 4, 2], hidden="tanh", output="softmax", bug="hvp-product-rule")
    report = check(net, *problem(net, np.float64, 0))
    assert report.verdict == "FAILED"
    data = report.to_dict()
    assert data["second_order"] is not None and not data["second_order"]["H[:, W2]"]["passed"]
    worst = data["second_order"]["H[:, W2]"]["worst"][0]
    assert worst["output_name"].startswith("grad ")
    assert "second order" in report._repr_html_()
    failing = sum(not r.passed for r in report.second_order.values()) if report.second_order else 0
    assert failing >= 1 and f"second order: {failing} failing" in repr(report)
