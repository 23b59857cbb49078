"""The reference network in the course's layout: samples as columns, laid side by side with a learner's code.

``Network(..., layout="columns")`` takes X (n_x, m), b (n, 1), labels (1, m) or (k, m), and returns gradients,
traces and outputs the same way. Every method agrees with the rows network on the transposed batch (one arithmetic
underneath), and tensor by tensor with the course's own exercise code (tests/course_exercise.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from preflight.init import lsuv
from preflight.nn import BuggyNetwork, GradcheckCallback, Network, gradcheck
from preflight.propagation import analyze

from . import course_exercise as course

#: Float64 results agree to rounding (the transposed batch is read through a view: BLAS may order sums differently).
TOL = {np.float64: 1e-12, np.float32: 1e-5}


def to_columns(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v.reshape(-1, 1) if k[0] == "b" else v for k, v in params.items()}


def batch(output: str, m: int, k: int, rng: np.random.Generator) -> tuple[Any, Any, Any]:
    """Rows labels and their columns form."""
    if output == "softmax":
        y = rng.integers(0, k, m)
        return y, y, None
    y = rng.integers(0, 2, (m, k)).astype(float) if output == "sigmoid" else rng.standard_normal((m, k))
    return y, y.T, None


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("output", "k", "hidden", "l2"),
    [
        ("sigmoid", 1, "relu", 0.0),
        ("softmax", 3, "tanh", 0.1),
        ("linear", 2, "leaky_relu", 0.0),
        ("sigmoid", 2, "tanh", 0.0),
    ],
)
def test_columns_agree_with_rows_on_the_transposed_batch(
    output: str, k: int, hidden: str, l2: float, dtype: Any
) -> None:
    rng = np.random.default_rng(0)
    rows = Network([4, 6, 5, k], hidden=hidden, output=output, l2=l2)
    cols = Network([4, 6, 5, k], hidden=hidden, output=output, l2=l2, layout="columns")
    params = rows.init(1, "he", dtype=dtype)
    params_c = cols.init(1, "he", dtype=dtype)
    assert (
        {n: v.shape for n, v in params_c.items()}
        == cols.shapes()
        == {n: p.shape for n, p in to_columns(params).items()}
    )
    X = rng.standard_normal((7, 4))
    y, y_c, _ = batch(output, 7, k, rng)
    tol = TOL[dtype]
    assert cols.cost(params_c, X.T, y_c) == pytest.approx(rows.cost(params, X, y), rel=tol)
    grads, grads_c = rows.gradients(params, X, y), cols.gradients(params_c, X.T, y_c)
    for name, g in to_columns(grads).items():
        assert grads_c[name].shape == g.shape and grads_c[name].dtype == dtype
        np.testing.assert_allclose(grads_c[name], g, rtol=tol, atol=tol)
    trace, trace_c = rows.trace(params, X), cols.trace(params_c, X.T)
    for a, a_c in zip(
        trace.logits + trace.inputs + trace.activations,
        trace_c.logits + trace_c.inputs + trace_c.activations,
        strict=True,
    ):
        np.testing.assert_allclose(a_c, a.T, rtol=tol, atol=tol)
    np.testing.assert_allclose(cols.forward(params_c, X.T), rows.forward(params, X).T, rtol=tol, atol=tol)
    predicted = rows.predict(params, X)
    assert np.array_equal(cols.predict(params_c, X.T), predicted[None, :] if predicted.ndim == 1 else predicted.T)
    if output != "linear":
        assert cols.accuracy(params_c, X.T, y_c) == rows.accuracy(params, X, y)


def test_side_by_side_with_the_course_code_tensor_by_tensor() -> None:
    X, Y, parameters = course.gradient_check_n_test_case()
    net = Network([4, 5, 3, 1], hidden="relu", output="sigmoid", layout="columns")
    cost, cache = course.forward_propagation_n(X, Y, parameters)
    # The course takes log(sigmoid(z)); preflight computes the same cross-entropy from the logits.
    assert net.cost(parameters, X, Y) == pytest.approx(cost, rel=1e-14)
    trace = net.trace(parameters, X)
    Z1, A1, _, _, Z2, A2, _, _, Z3, _, _, _ = cache
    for ours, theirs in zip([*trace.logits, *trace.inputs[1:]], [Z1, Z2, Z3, A1, A2], strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-15, atol=1e-15)
    fixed = course.backward_propagation_n_fixed(X, Y, cache)
    grads = net.gradients(parameters, X, Y)
    for name, g in grads.items():
        assert g.shape == fixed["d" + name].shape
        np.testing.assert_allclose(g, fixed["d" + name], rtol=1e-13, atol=1e-15)
    planted = BuggyNetwork([4, 5, 3, 1], hidden="relu", output="sigmoid", bug="course", layout="columns")
    buggy = course.backward_propagation_n(X, Y, cache)
    for name, g in planted.gradients(parameters, X, Y).items():
        np.testing.assert_allclose(g, buggy["d" + name], rtol=1e-13, atol=1e-15)


def test_the_structure_aware_check_runs_in_columns_and_names_the_course_bugs() -> None:
    X, Y, parameters = course.gradient_check_n_test_case()
    before = {k: v.copy() for k, v in parameters.items()}
    net = Network([4, 5, 3, 1], hidden="relu", output="sigmoid", layout="columns")
    assert gradcheck(net, parameters, X, Y).passed
    planted = BuggyNetwork([4, 5, 3, 1], hidden="relu", output="sigmoid", bug="course", layout="columns")
    report = gradcheck(planted, parameters, X, Y)
    assert sorted(n for n, r in report.parameters.items() if not r.passed) == ["W2", "b1"]
    assert report.parameters["b1"].shape == (5, 1)
    assert report.hints == ["b1: analytic = 4.00 x numeric", "W2: analytic = 2.00 x numeric"]
    assert all(np.array_equal(parameters[k], before[k]) for k in before)
    no_m = BuggyNetwork([4, 5, 3, 1], hidden="relu", output="sigmoid", bug="bias-no-1/m", layout="columns")
    assert gradcheck(no_m, parameters, X, Y).hints == ["b1: analytic = 3.00 x numeric (a missing 1/m with m = 3?)"]


def test_dropout_masks_are_columns_and_freeze_the_cost() -> None:
    net = Network([4, 6, 1], hidden="tanh", output="sigmoid", keep_prob=0.7, layout="columns")
    rows = Network([4, 6, 1], hidden="tanh", output="sigmoid", keep_prob=0.7)
    params = net.init(0, "lecun")
    X = np.random.default_rng(0).standard_normal((4, 9))
    Y = (X[:1] > 0).astype(float)
    masks = net.dropout_masks(3, 9)
    assert [m.shape for m in masks] == [(6, 9)]
    assert np.array_equal(masks[0], rows.dropout_masks(3, 9)[0].T)  # the same draws, transposed
    assert net.cost(params, X, Y, masks=masks) == net.cost(params, X, Y, masks=masks)
    assert gradcheck(net, params, X, Y, masks=masks).passed
    with pytest.raises(ValueError, match=r"masks: expected boolean arrays of shapes \[\(6, 9\)\]"):
        net.cost(params, X, Y, masks=rows.dropout_masks(3, 9))


def test_fit_in_columns_matches_fit_in_rows_and_callbacks_see_columns() -> None:
    X, Y, parameters = course.gradient_check_n_test_case()
    cols = Network([4, 5, 3, 1], hidden="relu", output="sigmoid", layout="columns")
    rows = Network([4, 5, 3, 1], hidden="relu", output="sigmoid")
    seen: list[tuple[int, ...]] = []
    callback = GradcheckCallback(cols, X, Y, at=[0, 5])
    history = cols.fit(
        parameters,
        X,
        Y,
        learning_rate=0.1,
        iterations=10,
        record_every=5,
        callbacks=[callback, lambda i, p: seen.append(p["b1"].shape)],
    )
    flat = {k: v.reshape(-1) if k[0] == "b" else v for k, v in parameters.items()}
    reference = rows.fit(flat, X.T, Y, learning_rate=0.1, iterations=10, record_every=5)
    np.testing.assert_allclose(history.costs, reference.costs, rtol=1e-12)
    for name, value in history.params.items():
        assert value.shape == parameters[name].shape
        np.testing.assert_allclose(value.reshape(-1), reference.params[name].reshape(-1), rtol=1e-12, atol=1e-15)
    assert set(seen) == {(5, 1)} and len(seen) == 11
    assert sorted(callback.reports) == [0, 5] and all(r.passed for r in callback.reports.values())


def test_propagation_and_lsuv_take_columns() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 16))
    y = rng.integers(0, 4, 200)
    rows = Network([16] + [64] * 20 + [4], hidden="relu", output="softmax")
    cols = Network([16] + [64] * 20 + [4], hidden="relu", output="softmax", layout="columns")
    params = rows.init(0, "lecun")
    report, report_c = analyze(rows, params, X, y, warn=False), analyze(cols, to_columns(params), X.T, y, warn=False)
    assert report_c.verdict == report.verdict == "vanishing"
    assert [round(layer.std, 12) for layer in report_c.layers] == [round(layer.std, 12) for layer in report.layers]
    result, result_c = lsuv(rows, X, 0), lsuv(cols, X.T, 0)
    assert result_c.params["b1"].shape == (64, 1)
    assert [r.variance_after for r in result_c.layers] == pytest.approx(
        [r.variance_after for r in result.layers], rel=1e-9
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda net, p: net.cost(p, np.ones((3, 4)), np.ones((1, 3))), r"X: expected 4 features \(rows\), got 3"),
        (lambda net, p: net.cost(p, np.ones((4, 3)), np.ones((1, 2))), r"y: expected 3 labels, one per column of X"),
        (
            lambda net, p: net.cost({**p, "b1": p["b1"].ravel()}, np.ones((4, 3)), np.ones(3)),
            r"params\['b1'\]: expected an array of shape \(5, 1\)",
        ),
    ],
)
def test_columns_inputs_in_the_wrong_layout_are_errors_naming_the_argument(call: Any, message: str) -> None:
    net = Network([4, 5, 1], layout="columns")
    with pytest.raises(ValueError, match=message):
        call(net, net.init(0))


def test_layout_is_checked_and_shown() -> None:
    with pytest.raises(ValueError, match="layout"):
        Network([2, 1], layout="cols")  # type: ignore[arg-type]
    assert repr(Network([2, 1], layout="columns")).endswith("layout='columns')")
    assert "layout" not in repr(Network([2, 1]))
