"""The engine takes a learner's gradients as the course names them, and reads m from a batch in either layout.

``grads`` keyed ``dW1``, ``db1`` (beside ``dZ1``, ``dA1``, caches) is matched to params ``W1``, ``b1`` at any depth
when the mapping is complete and unambiguous; anything else stays an error naming what is missing and how the
``d``-prefix rule was tried. The hint for a missing 1/m names the batch's m, whichever axis holds the samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from preflight import gradcheck
from preflight.check.diagnosis import TensorEvidence, batch_size, diagnose


def column_net(seed: int = 0, m: int = 3) -> tuple[Any, Any, dict[str, Any]]:
    """A 2-layer tanh-sigmoid net in the course's layout: X (4, m), b (n, 1)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((4, m))
    Y = (rng.random((1, m)) > 0.5).astype(float)
    params = {
        "W1": rng.standard_normal((5, 4)),
        "b1": rng.standard_normal((5, 1)),
        "W2": rng.standard_normal((1, 5)),
        "b2": rng.standard_normal((1, 1)),
    }
    return X, Y, params


def cost(X: Any, Y: Any, p: dict[str, Any]) -> float:
    A1 = np.tanh(p["W1"] @ X + p["b1"])
    Z2 = p["W2"] @ A1 + p["b2"]
    return float(np.mean(np.logaddexp(0, Z2) - Y * Z2))


def backward(X: Any, Y: Any, p: dict[str, Any], *, scale_w1: float = 1.0) -> dict[str, Any]:
    """The course's dict: dW/db with the intermediates dZ/dA, in the order backprop produces them."""
    m = X.shape[1]
    A1 = np.tanh(p["W1"] @ X + p["b1"])
    dZ2 = 1 / (1 + np.exp(-(p["W2"] @ A1 + p["b2"]))) - Y
    dA1 = p["W2"].T @ dZ2
    dZ1 = dA1 * (1 - A1**2)
    return {
        "dZ2": dZ2,
        "dW2": dZ2 @ A1.T / m,
        "db2": dZ2.sum(axis=1, keepdims=True) / m,
        "dA1": dA1,
        "dZ1": dZ1,
        "dW1": scale_w1 * dZ1 @ X.T / m,
        "db1": dZ1.sum(axis=1, keepdims=True) / m,
    }


def test_course_named_gradients_are_matched_and_the_rest_named_in_one_note() -> None:
    X, Y, params = column_net()
    report = gradcheck(lambda p: cost(X, Y, p), params, backward(X, Y, params))
    assert report.passed
    assert list(report.parameters) == ["W1", "b1", "W2", "b2"]
    assert report.notes == [
        "grads in the course's naming (dW1 -> W1, db1 -> b1, dW2 -> W2, db2 -> b2); ignored: dZ2, dA1, dZ1 "
        "(not parameters)"
    ]


def test_a_bug_in_course_named_gradients_is_localized() -> None:
    X, Y, params = column_net()
    report = gradcheck(lambda p: cost(X, Y, p), params, backward(X, Y, params, scale_w1=2.0))
    assert not report.passed
    assert [n for n, r in report.parameters.items() if not r.passed] == ["W1"]
    assert report.hints == ["W1: analytic = 2.00 x numeric"]


def test_the_course_naming_works_at_any_depth_and_with_a_callable() -> None:
    X, Y, flat = column_net()
    params = {"layer1": {"W": flat["W1"], "b": flat["b1"]}, "layer2": {"W": flat["W2"], "b": flat["b2"]}}

    def loss(p: dict[str, Any]) -> float:
        return cost(X, Y, {f"{k}{i}": p[f"layer{i}"][k] for i in (1, 2) for k in "Wb"})

    def grads(p: dict[str, Any]) -> dict[str, Any]:
        g = backward(X, Y, {f"{k}{i}": p[f"layer{i}"][k] for i in (1, 2) for k in "Wb"})
        return {f"layer{i}": {"dW": g[f"dW{i}"], "db": g[f"db{i}"], "dZ": g[f"dZ{i}"]} for i in (1, 2)}

    report = gradcheck(loss, params, grads)
    assert report.passed and list(report.parameters) == ["layer1.W", "layer1.b", "layer2.W", "layer2.b"]
    assert report.notes[0].endswith("ignored: layer1.dZ, layer2.dZ (not parameters)")


def test_a_partial_mapping_is_an_error_naming_what_is_missing_and_the_rule_tried() -> None:
    X, Y, params = column_net()
    grads = backward(X, Y, params)
    del grads["db2"]
    with pytest.raises(ValueError, match=r"no entry for \['b2'\]") as caught:
        gradcheck(lambda p: cost(X, Y, p), params, grads)
    message = str(caught.value)
    assert "'b2' or 'db2'" in message  # how the d-prefix rule was tried
    assert "matched by the d-prefix rule: dW1 -> W1, db1 -> b1, dW2 -> W2" in message
    assert "entries that match no parameter: dZ2, dA1, dZ1" in message


def test_an_ambiguous_mapping_is_an_error() -> None:
    X, Y, params = column_net()
    grads = backward(X, Y, params)
    grads["W2"] = grads["dW2"]
    del grads["db1"]
    with pytest.raises(ValueError, match=r"no entry for \['b1'\]"):
        gradcheck(lambda p: cost(X, Y, p), params, grads)
    grads["db1"] = backward(X, Y, params)["db1"]
    with pytest.raises(ValueError, match=r"\['W2'\] given under both names \('W2' and 'dW2'\)"):
        gradcheck(lambda p: cost(X, Y, p), params, grads)


def test_nothing_matching_keeps_the_structure_error_and_says_the_d_rule_found_nothing() -> None:
    with pytest.raises(ValueError, match=r"missing \['w'\], unexpected \['v'\] \(the course's naming.*'dw'"):
        gradcheck(lambda p: 0.0, {"w": np.ones(2)}, {"v": np.ones(2)})


def test_params_named_exactly_keep_rejecting_unexpected_entries() -> None:
    with pytest.raises(ValueError, match=r"unexpected entries \['dZ1'\]"):
        gradcheck(lambda p: float(np.sum(p["w"])), {"w": np.ones(2)}, {"w": np.ones(2), "dZ1": np.ones(2)})


@pytest.mark.parametrize("m", [3, 5, 16])
@pytest.mark.parametrize("layout", ["columns", "rows"])
def test_a_missing_one_over_m_names_the_batch_m_whichever_axis_holds_the_samples(m: int, layout: str) -> None:
    X, Y, params = column_net(seed=m, m=m)
    grads = backward(X, Y, params)
    grads["dW1"] = grads["dW1"] * m  # 1/m forgotten in dW1
    batch = X if layout == "columns" else X.T
    report = gradcheck(lambda p: cost(X, Y, p), params, grads, batch=batch)
    assert report.hints == [f"W1: analytic = {m}.00 x numeric (a missing 1/m with m = {m}?)"]
    assert gradcheck(lambda p: cost(X, Y, p), params, grads, batch=(batch, Y)).hints == report.hints


def test_a_factor_that_is_not_the_batch_size_is_not_called_a_missing_one_over_m() -> None:
    X, Y, params = column_net(m=16)
    grads = backward(X, Y, params)
    grads["dW1"] = grads["dW1"] * 8
    hints = gradcheck(lambda p: cost(X, Y, p), params, grads, batch=X).hints
    assert hints == ["W1: analytic = 8.00 x numeric"]
    # Without the batch, a whole factor >= 8 is only a guess, and says so with a question mark.
    assert gradcheck(lambda p: cost(X, Y, p), params, grads).hints == [
        "W1: analytic = 8.00 x numeric (a missing 1/m with m = 8?)"
    ]


def test_every_tensor_off_by_m_names_the_output_delta_with_the_batch_m() -> None:
    n = np.array([0.1, -0.2, 0.3, 0.05])
    evidence = [
        TensorEvidence(f"W{i}", (2, 2), np.arange(4), 3 * n, n, np.ones(4), np.full(4, 1e-6), True) for i in (1, 2)
    ]
    assert "the output delta dZ (a missing 1/m, with m = 3?)" in diagnose(evidence, m=3)[0]
    assert "or the scale of the cost" in diagnose(evidence)[0]


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        (7, 7),
        (np.zeros((4, 3)), 3),  # columns: features match W1's n_x = 4
        (np.zeros((3, 4)), 3),  # rows
        (np.zeros((4, 4)), None),  # square: cannot tell
        ((np.zeros((4, 4)), np.zeros((1, 4))), 4),  # ... unless the labels say
        ((np.zeros((4, 3)), np.array([1, 1, 0])), 3),
        (np.zeros(9), 9),  # labels
        (np.zeros((10, 1, 8, 8)), 10),  # images: samples first
    ],
)
def test_batch_size_reads_m_from_either_axis(batch: Any, expected: int | None) -> None:
    m, note = batch_size(batch, {"W1": np.zeros((5, 4)), "b1": np.zeros((5, 1))})
    assert m == expected
    assert (note is None) == (expected is not None)


@pytest.mark.parametrize("batch", [0, -2, "X", 2.5, True])
def test_a_bad_batch_is_an_error_naming_it(batch: Any) -> None:
    with pytest.raises(ValueError, match=r"^batch: expected a batch size m >= 1, inputs X, or \(X, Y\)"):
        gradcheck(lambda p: float(np.sum(p["w"] ** 2)), {"w": np.ones(2)}, {"w": 2 * np.ones(2)}, batch=batch)


def test_an_undecidable_batch_leaves_a_note_not_a_wrong_m() -> None:
    w = np.ones((4, 4))
    report = gradcheck(lambda p: float(np.sum(p["w"] ** 2)), {"w": w}, {"w": 2 * w}, batch=np.zeros((4, 4)))
    assert report.passed
    assert report.notes == [
        "batch: could not tell which axis of X (4, 4) holds the samples (first weights (4, 4)); pass batch=m for the "
        "hint about a missing 1/m"
    ]
