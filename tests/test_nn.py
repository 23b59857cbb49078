"""Specification of the reference network: shapes, cost, hand-written backprop, dropout, training, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preflight import init
from preflight.nn import Network
from preflight.nn.activations import ACTIVATIONS
from preflight.nn.heads import HEADS

from .oracle import central_differences, labels_for, relative_difference

CASES = list(itertools.product(sorted(ACTIVATIONS), sorted(HEADS), [np.float64, np.float32]))
# float64: central differences with eps=1e-6 err by ~eps^2 * f''' (1e-12) plus rounding eps_64/eps (1e-10), so a
# correct backprop gives a relative difference near 1e-9; 1e-7 is the course's "fine" threshold.
FLOAT64_TOLERANCE = 1e-7
# float32: the analytic gradient is computed in float32 (relative rounding ~ m * n * 6e-8 over a few layers) and
# compared with float64 finite differences of the same function at the same (float32-representable) point.
FLOAT32_TOLERANCE = 1e-4


def test_parameter_shapes_follow_torch_linear_layout() -> None:
    net = Network([64, 100, 50, 10], hidden="tanh", output="softmax", l2=1e-3)
    params = net.init(0, scheme="he")
    assert {k: v.shape for k, v in params.items()} == {
        "W1": (100, 64),
        "b1": (100,),
        "W2": (50, 100),
        "b2": (50,),
        "W3": (10, 50),
        "b3": (10,),
    }
    assert all(not params[f"b{layer}"].any() for layer in (1, 2, 3))


@pytest.mark.parametrize(("hidden", "output", "dtype"), CASES)
@pytest.mark.parametrize(("l2", "keep_prob"), [(0.0, 1.0), (0.7, 1.0), (0.3, 0.6)])
def test_backprop_matches_central_differences(small_problem, hidden, output, dtype, l2, keep_prob) -> None:
    net, params, X, y = small_problem(hidden, output, dtype, l2=l2, keep_prob=keep_prob)
    masks = net.dropout_masks(np.random.default_rng(1), X.shape[0]) if keep_prob < 1 else None
    analytic = net.gradients(params, X, y, masks=masks)
    assert all(analytic[k].dtype == dtype and analytic[k].shape == params[k].shape for k in params)
    # The oracle evaluates the same network in float64 at the same point.
    numeric = central_differences(lambda p: net.cost(p, X, y, masks=masks), params, eps=1e-6)
    tolerance = FLOAT64_TOLERANCE if dtype == np.float64 else FLOAT32_TOLERANCE
    assert relative_difference(analytic, numeric) < tolerance


def test_a_different_hidden_activation_per_layer(small_problem) -> None:
    net, params, X, y = small_problem(["relu", "sigmoid"], "sigmoid", sizes=(4, 6, 5, 2))
    numeric = central_differences(lambda p: net.cost(p, X, y), params, eps=1e-6)
    assert relative_difference(net.gradients(params, X, y), numeric) < FLOAT64_TOLERANCE


def test_cost_adds_the_l2_term_exactly(small_problem) -> None:
    net, params, X, y = small_problem(l2=0.0)
    lam, m = 0.5, X.shape[0]
    regularized = Network(net.sizes, hidden=net.hidden, output=net.output, l2=lam)
    squares = sum(float(np.sum(params[k] ** 2)) for k in params if k.startswith("W"))
    assert regularized.cost(params, X, y) == pytest.approx(net.cost(params, X, y) + lam / (2 * m) * squares, rel=1e-14)
    plain, reg = net.gradients(params, X, y), regularized.gradients(params, X, y)
    for k in params:
        expected = plain[k] + (lam / m * params[k] if k.startswith("W") else 0)
        np.testing.assert_allclose(reg[k], expected, rtol=1e-12, atol=1e-15)


def test_cross_entropy_stays_finite_when_outputs_saturate() -> None:
    net = Network([1, 1], output="sigmoid")
    params = {"W1": np.array([[1000.0]]), "b1": np.zeros(1)}
    cost = net.cost(params, np.array([[1.0], [-1.0]]), np.array([0, 1]))
    assert np.isfinite(cost) and cost == pytest.approx(1000.0)
    softmax = Network([1, 2], output="softmax")
    params = {"W1": np.array([[800.0], [-800.0]]), "b1": np.zeros(2)}
    assert softmax.cost(params, np.array([[1.0]]), np.array([1])) == pytest.approx(1600.0)


def test_integer_and_one_hot_labels_give_the_same_softmax_cost(small_problem) -> None:
    net, params, X, y = small_problem(output="softmax")
    one_hot = np.eye(3)[y]
    assert net.cost(params, X, one_hot) == net.cost(params, X, y)


def test_float32_parameters_keep_the_whole_computation_in_float32(small_problem) -> None:
    net, params, X, y = small_problem(dtype=np.float32)
    grads = net.gradients(params, X, y)
    assert {g.dtype for g in grads.values()} == {np.dtype(np.float32)}
    assert net.forward(params, X).dtype == np.float32
    assert isinstance(net.cost(params, X, y), float)


def test_frozen_dropout_masks_make_the_cost_deterministic(small_problem) -> None:
    net, params, X, y = small_problem(keep_prob=0.5, m=50)
    masks = net.dropout_masks(np.random.default_rng(3), X.shape[0])
    assert net.cost(params, X, y, masks=masks) == net.cost(params, X, y, masks=masks)
    unfrozen = {net.cost(params, X, y) for _ in range(5)}
    assert len(unfrozen) > 1, "without masks or rng, dropout draws fresh masks each call"
    same_seed = {net.cost(params, X, y, rng=np.random.default_rng(9)) for _ in range(3)}
    assert len(same_seed) == 1


def test_inverted_dropout_scales_kept_units(small_problem) -> None:
    net, params, X, _ = small_problem(keep_prob=0.5, hidden="linear", output="linear", m=4)
    all_kept = tuple(np.ones((X.shape[0], n), dtype=bool) for n in net.sizes[1:-1])
    # Keeping every unit with keep_prob 0.5 doubles each hidden activation.
    trace = net.trace(params, X, masks=all_kept)
    np.testing.assert_allclose(trace.inputs[1], 2 * trace.activations[0])


def test_trace_keeps_every_layer_and_ends_in_the_output(small_problem) -> None:
    net, params, X, _ = small_problem(hidden="tanh", output="softmax", m=6)
    trace = net.trace(params, X)
    assert len(trace.inputs) == len(trace.logits) == net.depth and len(trace.activations) == net.depth - 1
    np.testing.assert_array_equal(trace.inputs[0], X)
    for layer in range(1, net.depth):
        np.testing.assert_allclose(trace.activations[layer - 1], np.tanh(trace.logits[layer - 1]))
        np.testing.assert_array_equal(trace.inputs[layer], trace.activations[layer - 1])  # no masks: no dropout
    np.testing.assert_allclose(net.head.output(trace.logits[-1]), net.forward(params, X))
    with pytest.raises(ValueError, match=r"masks: given, but keep_prob is 1\.0"):
        net.trace(params, X, masks=(np.ones((6, 2), dtype=bool),))


def test_fit_leaves_the_callers_parameters_untouched_and_lowers_the_cost(small_problem) -> None:
    net, params, X, y = small_problem(m=40)
    before = {k: v.copy() for k, v in params.items()}
    history = net.fit(params, X, y, learning_rate=0.5, iterations=200, record_every=50)
    assert all(np.array_equal(params[k], before[k]) for k in params)
    assert history.iterations == [0, 50, 100, 150]
    assert history.costs[0] == pytest.approx(net.cost(params, X, y))
    assert net.cost(history.params, X, y) < 0.8 * history.costs[0]


def test_fit_calls_callbacks_before_each_update_and_after_the_last(small_problem) -> None:
    net, params, X, y = small_problem()
    seen: list[int] = []
    net.fit(params, X, y, learning_rate=0.1, iterations=3, callbacks=[lambda i, p: seen.append(i)])
    assert seen == [0, 1, 2, 3]


def test_minibatch_training_is_reproducible_with_a_seed(small_problem) -> None:
    net, params, X, y = small_problem(m=30, keep_prob=0.8)
    runs = [net.fit(params, X, y, learning_rate=0.1, iterations=20, batch_size=8, rng=5) for _ in range(2)]
    assert runs[0].costs == runs[1].costs
    with pytest.raises(ValueError, match="rng"):
        net.fit(params, X, y, learning_rate=0.1, iterations=2, batch_size=8)


def test_predict_and_accuracy_per_head() -> None:
    X = np.array([[1.0], [-1.0]])
    binary = Network([1, 1], output="sigmoid")
    params = {"W1": np.array([[3.0]]), "b1": np.zeros(1)}
    assert binary.predict(params, X).tolist() == [1, 0]
    assert binary.accuracy(params, X, np.array([1, 1])) == 0.5
    multi = Network([1, 2], output="softmax")
    params = {"W1": np.array([[1.0], [-1.0]]), "b1": np.zeros(2)}
    assert multi.predict(params, X).tolist() == [0, 1]
    assert multi.accuracy(params, X, np.array([0, 1])) == 1.0
    with pytest.raises(ValueError, match="linear"):
        Network([1, 1], output="linear").accuracy({"W1": np.ones((1, 1)), "b1": np.zeros(1)}, X, np.zeros(2))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(1, 12))
def test_cost_and_gradients_do_not_depend_on_sample_order(seed: int, m: int) -> None:
    rng = np.random.default_rng(seed)
    net = Network([3, 4, 2], hidden="tanh", output="softmax", l2=0.1)
    params = net.init(rng, "lecun")
    X, y = rng.standard_normal((m, 3)), rng.integers(0, 2, m)
    order = rng.permutation(m)
    assert net.cost(params, X[order], y[order]) == pytest.approx(net.cost(params, X, y), rel=1e-12)
    shuffled, plain = net.gradients(params, X[order], y[order]), net.gradients(params, X, y)
    for k in params:
        np.testing.assert_allclose(shuffled[k], plain[k], rtol=1e-10, atol=1e-14)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), depth=st.integers(1, 4), width=st.integers(1, 6))
def test_any_depth_has_gradients_shaped_like_its_parameters(seed: int, depth: int, width: int) -> None:
    sizes = [3] + [width] * (depth - 1) + [2]
    net = Network(sizes, hidden="leaky_relu", output="sigmoid")
    rng = np.random.default_rng(seed)
    params = net.init(rng)
    grads = net.gradients(params, rng.standard_normal((5, 3)), rng.integers(0, 2, (5, 2)))
    assert {k: g.shape for k, g in grads.items()} == {k: p.shape for k, p in params.items()}


# ---------------------------------------------------------------------------------------------- bad input
def _net_and_params():
    net = Network([3, 4, 2], output="softmax")
    return net, net.init(0)


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.ones((5, 3)), np.zeros(4, dtype=int), "y: expected 5 labels"),
        (np.ones((5, 2)), np.zeros(5, dtype=int), "X: expected 3 features"),
        (np.ones(3), np.zeros(1, dtype=int), "X: expected 2 dimensions"),
        (np.array([[1.0, np.nan, 0.0]]), np.zeros(1, dtype=int), "X: expected finite values"),
        (np.array([[1.0, np.inf, 0.0]]), np.zeros(1, dtype=int), "X: expected finite values"),
        (np.ones((2, 3)), np.array([0, 2]), r"y: expected integer class labels in \[0, 2\)"),
        (np.ones((2, 3)), np.array([0, -1]), "y: expected integer class labels"),
        (np.ones((2, 3)), np.array([0.5, 1.0]), "non-integers"),
        (np.ones((0, 3)), np.zeros(0, dtype=int), r"X: expected at least one row \(sample\), got shape \(0, 3\)"),
    ],
)
def test_bad_data_is_rejected_naming_the_argument(X, y, message) -> None:
    net, params = _net_and_params()
    with pytest.raises(ValueError, match=message):
        net.cost(params, X, y)


def test_an_unknown_activation_is_rejected_even_without_hidden_layers() -> None:
    with pytest.raises(ValueError, match="hidden: got 'foo'"):
        Network([4, 3], hidden="foo")


def test_sigmoid_labels_outside_zero_one_are_rejected() -> None:
    net = Network([2, 1], output="sigmoid")
    with pytest.raises(ValueError, match=r"y: expected labels in \[0, 1\]"):
        net.cost(net.init(0), np.ones((2, 2)), np.array([0, 2]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": "swish"}, "hidden: got 'swish'; expected one of"),
        ({"output": "softplus"}, "output: got 'softplus'"),
        ({"keep_prob": 0.0}, r"keep_prob: expected a number in \(0.0, 1.0\]"),
        ({"keep_prob": 1.5}, "keep_prob"),
        ({"l2": -1.0}, "l2"),
        ({"l2": np.inf}, r"l2: expected a number in \[0.0, inf\), got inf"),
        ({"hidden": ["relu"]}, "hidden: expected one name or 2 names"),
    ],
)
def test_bad_configuration_is_rejected_when_built(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        Network([3, 4, 4, 2], **kwargs)


def test_bad_parameters_are_rejected_naming_the_entry() -> None:
    net, params = _net_and_params()
    X, y = np.ones((2, 3)), np.array([0, 1])
    with pytest.raises(ValueError, match=r"params\['W1'\]: expected an array of shape \(4, 3\)"):
        net.cost({**params, "W1": np.ones((3, 4))}, X, y)
    with pytest.raises(ValueError, match="missing \\['b2'\\]"):
        net.cost({k: v for k, v in params.items() if k != "b2"}, X, y)
    with pytest.raises(ValueError, match="float32 or float64"):
        net.cost({**params, "W1": params["W1"].astype(int)}, X, y)
    with pytest.raises(ValueError, match="one dtype"):
        net.cost({**params, "W1": params["W1"].astype(np.float32)}, X, y)


def test_frozen_masks_of_the_wrong_shape_or_without_dropout_are_rejected(small_problem) -> None:
    net, params, X, y = small_problem(keep_prob=0.5)
    with pytest.raises(ValueError, match="masks: expected boolean arrays of shapes"):
        net.cost(params, X, y, masks=net.dropout_masks(0, X.shape[0] + 1))
    plain, params, X, y = small_problem()
    with pytest.raises(ValueError, match=r"keep_prob is 1\.0"):
        plain.cost(params, X, y, masks=net.dropout_masks(0, X.shape[0]))


def test_init_accepts_any_scheme_name_or_initializer() -> None:
    net = Network([3, 4, 2])
    assert not net.init(0, "zeros")["W1"].any()
    assert net.init(0, init.normal(10.0))["W1"].std() > 3
    with pytest.raises(ValueError, match="scheme: got 'bogus'"):
        net.init(0, "bogus")
    with pytest.raises(ValueError, match="dtype: expected float32 or float64"):
        net.init(0, dtype=np.int32)


def test_labels_helper_matches_each_head() -> None:
    rng = np.random.default_rng(0)
    for output in HEADS:
        net = Network([2, 3], output=output)
        net.cost(net.init(0), rng.standard_normal((4, 2)), labels_for(output, 4, 3, rng))


def test_a_custom_scheme_returning_the_wrong_shape_is_refused() -> None:
    net = Network([3, 4, 2])
    with pytest.raises(ValueError, match=r"scheme: expected an array of shape \(4, 3\) and dtype float64 for W1"):
        net.init(0, lambda rng, shape, dtype: np.zeros(3))
