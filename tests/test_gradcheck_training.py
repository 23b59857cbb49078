"""The training callback: a gradient check at initialization and after N iterations, without disturbing training."""

from __future__ import annotations

import numpy as np
import pytest

from preflight.nn import Network
from preflight.nn.bugs import BuggyNetwork
from preflight.nn.callbacks import GradcheckCallback, GradientCheckError


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    return X, (X[:, 0] * X[:, 1] > 0).astype(int)


def test_checks_at_initialization_and_after_n_iterations_without_changing_training() -> None:
    X, y = data()
    net = Network([3, 6, 1], hidden="tanh", output="sigmoid", l2=0.1)
    params = net.init(0, "glorot")
    callback = GradcheckCallback(net, X, y, after=25, batch=16)
    checked = net.fit(params, X, y, learning_rate=0.5, iterations=30, callbacks=[callback])
    plain = net.fit(params, X, y, learning_rate=0.5, iterations=30)
    assert sorted(callback.reports) == [0, 25]
    assert all(report.passed for report in callback.reports.values())
    assert all(np.array_equal(checked.params[k], plain.params[k]) for k in params)


def test_dropout_networks_are_checked_with_frozen_masks() -> None:
    X, y = data()
    net = Network([3, 6, 1], hidden="relu", output="sigmoid", keep_prob=0.7)
    callback = GradcheckCallback(net, X, y, at=[0, 5], batch=16)
    net.fit(net.init(0), X, y, learning_rate=0.1, iterations=6, rng=1, callbacks=[callback])
    assert sorted(callback.reports) == [0, 5] and all(r.passed for r in callback.reports.values())


def test_a_broken_backward_pass_warns_or_raises() -> None:
    X, y = data()
    net = BuggyNetwork([3, 6, 4, 1], hidden="tanh", output="sigmoid", bug="factor-2")
    with pytest.warns(RuntimeWarning, match="gradient check failed at iteration 0: worst tensor W2"):
        net.fit(net.init(0, "glorot"), X, y, learning_rate=0.1, iterations=2, callbacks=[GradcheckCallback(net, X, y)])
    strict = GradcheckCallback(net, X, y, raise_on_failure=True)
    with pytest.raises(GradientCheckError, match=r"W2: analytic = 2\.00 x numeric"):
        net.fit(net.init(0, "glorot"), X, y, learning_rate=0.1, iterations=2, callbacks=[strict])


def test_bad_iterations_are_rejected() -> None:
    X, y = data()
    with pytest.raises(ValueError, match="at: expected an integer >= 0"):
        GradcheckCallback(Network([3, 1]), X, y, at=[-1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"at": 5}, r"at: expected a sequence of iterations such as \[0, 100\], got 5"),
        ({"bogus": 1}, r"options: expected among \['eps', 'method', 'progress', 'sample', 'screen'\].*\['bogus'\]"),
        ({"y": np.zeros(3)}, r"y: expected 40 labels \(one per row of X\), got shape \(3,\)"),
    ],
)
def test_a_callback_checks_its_arguments_when_built_not_when_training_reaches_it(
    kwargs: dict[str, object], message: str
) -> None:
    X, y = data()
    net = Network([3, 6, 1], hidden="tanh", output="sigmoid")
    arguments: dict[str, object] = {"y": y, **kwargs}
    with pytest.raises(ValueError, match=message):
        GradcheckCallback(net, X, **arguments)  # type: ignore[arg-type]


def test_fit_wants_a_list_of_callbacks_not_a_single_one() -> None:
    X, y = data()
    net = Network([3, 6, 1], hidden="tanh", output="sigmoid")
    callback = GradcheckCallback(net, X, y)
    with pytest.raises(ValueError, match=r"callbacks: expected a list of callables .* such as \[callback\]"):
        net.fit(net.init(0), X, y, learning_rate=0.1, iterations=2, callbacks=callback)  # type: ignore[arg-type]
