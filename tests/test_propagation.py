"""Signal propagation diagnostics: the statistics are right, the verdicts name the known failure modes."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from preflight import init
from preflight.nn import Network
from preflight.propagation import (
    PropagationWarning,
    Thresholds,
    analyze,
    layer_ranges,
    layer_verdict,
    mean_field,
    overall_verdict,
    recommend,
    recommend_for,
    saturated_fraction,
)

DTYPES = [np.float32, np.float64]


def problem(
    hidden: str, scheme: init.Initializer | str, *, depth: int = 20, width: int = 128, m: int = 128, seed: int = 0
) -> tuple[Network, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A deep network of equal widths on N(0, 1) inputs with random labels of 4 classes."""
    rng = np.random.default_rng(seed)
    net = Network([width] * (depth + 1) + [4], hidden=hidden, output="softmax")
    return net, net.init(seed + 1, scheme), rng.standard_normal((m, width)), rng.integers(0, 4, m)


def quiet_analyze(*args: object, **kwargs: object) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PropagationWarning)
        return analyze(*args, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the statistics


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize(("hidden", "output"), [("relu", "softmax"), ("tanh", "sigmoid"), ("sigmoid", "linear")])
def test_gradient_norms_are_the_networks_own_gradients(hidden: str, output: str, dtype: type) -> None:
    rng = np.random.default_rng(0)
    net = Network([6, 9, 7, 3], hidden=hidden, output=output, l2=0.3)
    params = net.init(0, "glorot", dtype=dtype)
    X = rng.standard_normal((11, 6))
    y = {"softmax": rng.integers(0, 3, 11), "sigmoid": rng.integers(0, 2, (11, 3)), "linear": rng.random((11, 3))}
    report = quiet_analyze(net, params, X, y[output], learning_rate=0.5)
    grads = net.gradients(params, X, y[output])
    for s in report.layers:
        w, g = params[f"W{s.layer}"], grads[f"W{s.layer}"]
        # Same float operations in float64; float32 sums of ~60 terms differ by a few ulps.
        rel = 1e-5 if dtype == np.float32 else 1e-12
        assert s.weight_grad_norm == pytest.approx(np.linalg.norm(g.astype(np.float64)), rel=rel)
        assert s.update_ratio == pytest.approx(0.5 * s.weight_grad_norm / np.linalg.norm(w.astype(np.float64)))


def test_backward_signal_matches_finite_differences_of_the_cost_in_the_logits() -> None:
    # dL/dZ_l is checked where it is easiest to perturb: a bias shift moves Z_l by the same amount in every row,
    # so ||dL/db_l|| = ||sum over rows of dL/dZ_l|| and, for a single sample, equals ||dL/dZ_l||.
    net = Network([5, 8, 6, 3], hidden="tanh", output="softmax")
    params = net.init(2, "lecun")
    X, y = np.random.default_rng(3).standard_normal((1, 5)), np.array([1])
    report = quiet_analyze(net, params, X, y)
    for s in report.layers:
        b = f"b{s.layer}"
        numeric = []
        for i in range(params[b].size):
            plus = {**params, b: params[b] + np.eye(params[b].size)[i] * 1e-6}
            minus = {**params, b: params[b] - np.eye(params[b].size)[i] * 1e-6}
            numeric.append((net.cost(plus, X, y) - net.cost(minus, X, y)) / 2e-6)
        # Central differences at h = 1e-6: truncation ~1e-12, rounding ~1e-10 relative.
        assert s.delta_norm == pytest.approx(np.linalg.norm(numeric), rel=1e-7)


def test_forward_statistics_and_fractions_on_a_constructed_layer() -> None:
    net = Network([2, 4, 2], hidden="relu", output="softmax")
    params = {
        "W1": np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [0.0, 0.0]]),
        "b1": np.array([0.0, 0.0, -10.0, 0.0]),
        "W2": np.ones((2, 4)),
        "b2": np.zeros(2),
    }
    X = np.array([[1.0, 2.0], [3.0, 4.0], [0.5, 0.5]])  # positive: units 3 (bias -10) and 4 (zero) never fire
    report = quiet_analyze(net, params, X, np.array([0, 1, 0]))
    first = report.layers[0]
    a = np.maximum(X @ params["W1"].T + params["b1"], 0)
    assert first.mean == pytest.approx(a.mean()) and first.std == pytest.approx(a.std())
    assert first.dead_fraction == 0.5 and first.saturated_fraction is None
    assert first.verdict == "dead"


@pytest.mark.parametrize(("hidden", "level"), [("tanh", 0.99), ("sigmoid", 0.99), ("tanh", 0.5)])
def test_saturated_fraction_counts_activations_beyond_the_level(hidden: str, level: float) -> None:
    net = Network([1, 1, 2], hidden=hidden, output="softmax")
    params = {"W1": np.ones((1, 1)), "b1": np.zeros(1), "W2": np.ones((2, 1)), "b2": np.zeros(2)}
    z = np.array([[-8.0], [-1.0], [0.0], [0.3], [1.0], [8.0]])
    a = np.tanh(z) if hidden == "tanh" else np.tanh(z / 2)  # sigmoid measured as 2a - 1 = tanh(z / 2)
    report = quiet_analyze(net, params, z, np.zeros(6, dtype=int), thresholds=Thresholds(saturation_level=level))
    assert report.layers[0].saturated_fraction == pytest.approx(np.mean(np.abs(a) > level))


def test_float32_statistics_agree_with_float64() -> None:
    net, params, X, y = problem("tanh", "lecun", depth=8, width=64)
    r64 = quiet_analyze(net, params, X, y)
    r32 = quiet_analyze(net, {k: v.astype(np.float32) for k, v in params.items()}, X, y)
    for a, b in zip(r32.layers, r64.layers, strict=True):
        # float32 forward/backward through 9 layers: relative errors ~1e-6, far inside 1e-4.
        assert a.std == pytest.approx(b.std, rel=1e-4)
        assert a.delta_norm == pytest.approx(b.delta_norm, rel=1e-4)
        assert a.verdict == b.verdict


def test_inputs_and_parameters_are_not_modified() -> None:
    net, params, X, y = problem("relu", "he", depth=4, width=16)
    copies = {k: v.copy() for k, v in params.items()}, X.copy()
    quiet_analyze(net, params, X, y)
    assert all(np.array_equal(params[k], copies[0][k]) for k in params)
    np.testing.assert_array_equal(X, copies[1])


# ---------------------------------------------------------------------- mean field


@pytest.mark.parametrize("q", [1e-60, 1e-6, 0.3, 2.0, 50.0])
def test_mean_field_expectations_in_closed_form(q: float) -> None:
    # Trapezoid rule on the grids: relative error ~1e-5 (see propagation._FIXED_GRID); 1e-4 leaves room.
    assert mean_field("relu", q) == pytest.approx((q / 2, 0.5), rel=1e-4)
    assert mean_field("linear", q) == pytest.approx((q, 1.0), rel=1e-4)
    assert mean_field("leaky_relu", q) == pytest.approx((q * (1 + 0.01**2) / 2, (1 + 0.01**2) / 2), rel=1e-4)


def test_mean_field_matches_monte_carlo_for_tanh_and_sigmoid() -> None:
    h = np.random.default_rng(0).standard_normal(2_000_000)
    for q in (0.1, 1.0, 25.0, 500.0):
        for name, phi, dphi in [
            ("tanh", np.tanh, lambda x: 1 - np.tanh(x) ** 2),
            ("sigmoid", lambda x: 1 / (1 + np.exp(-x)), lambda x: np.exp(-x) / (1 + np.exp(-x)) ** 2),
        ]:
            x = math.sqrt(q) * h
            expected = (np.mean(phi(x) ** 2), np.mean(dphi(x) ** 2))
            # 2e6 samples: Monte Carlo standard error below 0.3% of these means; 2% leaves room for sparse tails.
            assert mean_field(name, q) == pytest.approx(expected, rel=2e-2)


@pytest.mark.parametrize(("hidden", "scheme"), [("relu", "he"), ("tanh", "lecun"), ("relu", "lecun")])
def test_measured_gain_matches_the_mean_field_prediction(hidden: str, scheme: str) -> None:
    net, params, X, y = problem(hidden, scheme, depth=20, width=256, m=128)
    report = quiet_analyze(net, params, X, y)
    hidden_layers = report.layers[:-2]
    measured = np.exp(np.mean([np.log(s.chi_measured) for s in hidden_layers]))
    predicted = np.exp(np.mean([np.log(s.chi_predicted) for s in hidden_layers]))
    # Width 256: per-layer gains fluctuate by ~sqrt(2 / 256) ~ 9%; over 19 layers the geometric mean by ~2%.
    assert measured == pytest.approx(predicted, rel=0.06)
    expected = {"he": 1.0, "lecun": 0.5 if hidden == "relu" else None}[scheme]
    if expected is not None:
        assert predicted == pytest.approx(expected, rel=0.02)
    # Forward: the q recursion tracks the measured pre-activation scale (finite width: within 25% at depth 20).
    last = report.layers[-2]
    assert last.predicted_rms == pytest.approx(last.pre_rms, rel=0.25)


# ---------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    ("hidden", "scheme", "verdict"),
    [
        ("tanh", init.normal(0.01), "vanishing"),
        ("tanh", init.normal(1.0), "saturated"),
        ("sigmoid", init.normal(1.0), "saturated"),
        ("tanh", init.lecun_normal, "healthy"),
        ("relu", init.lecun_normal, "vanishing"),
        ("relu", init.he_normal, "healthy"),
        ("relu", init.normal(1.0), "exploding"),
        ("relu", init.orthogonal(math.sqrt(2)), "healthy"),
    ],
)
def test_overall_verdicts_for_the_classic_cases(hidden: str, scheme: init.Initializer, verdict: str) -> None:
    net, params, X, y = problem(hidden, scheme)
    report = quiet_analyze(net, params, X, y)
    assert report.verdict == verdict
    assert verdict in str(report)


def test_doubtful_layers_warn_once_per_verdict_and_healthy_ones_do_not() -> None:
    net, params, X, y = problem("relu", "lecun")
    with pytest.warns(PropagationWarning, match=r"vanishing signal in layers 1-21 of 21; try init scheme 'he'"):
        analyze(net, params, X, y)
    net, params, X, y = problem("relu", "he")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analyze(net, params, X, y)


def test_thresholds_move_the_verdict() -> None:
    net, params, X, y = problem("tanh", "lecun")
    assert quiet_analyze(net, params, X, y).verdict == "healthy"
    strict = Thresholds(vanishing=0.5)  # tanh with LeCun shrinks slowly (~1/sqrt(depth)): strict enough to flag
    assert quiet_analyze(net, params, X, y, thresholds=strict).verdict == "vanishing"
    with pytest.raises(ValueError, match=r"^vanishing"):
        Thresholds(vanishing=2.0)


@pytest.mark.parametrize(
    ("hidden", "scheme"),
    [("relu", "he"), ("leaky_relu", "he"), ("tanh", "lecun"), ("sigmoid", "glorot"), ("linear", "orthogonal")],
)
def test_recommendation_fits_the_activation(hidden: str, scheme: str) -> None:
    recommendation = recommend(Network([3, 4, 4, 2], hidden=hidden))
    assert recommendation.scheme == scheme and scheme in init.SCHEMES


def test_mixed_activations_get_lsuv() -> None:
    assert recommend(Network([3, 4, 4, 2], hidden=["relu", "tanh"])).scheme == "lsuv"


def test_bad_arguments_are_rejected() -> None:
    net, params, X, y = problem("relu", "he", depth=2, width=8)
    with pytest.raises(ValueError, match=r"^learning_rate"):
        analyze(net, params, X, y, learning_rate=0.0)
    with pytest.raises(ValueError, match=r"^X"):
        analyze(net, params, X[:, :3], y)


# ---------------------------------------------------------------------- the report


def test_report_serializes_prints_and_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    net, params, X, y = problem("relu", "lecun", depth=6, width=32)
    report = quiet_analyze(net, params, X, y)
    data = json.loads(report.to_json())
    assert data["verdict"] == report.verdict and len(data["layers"]) == net.depth
    assert data["layers"][0]["dead_fraction"] is not None and data["layers"][-1]["chi_measured"] is None
    text = str(report)
    assert text.count("\n") >= net.depth + 4 and "recommended init: he" in text
    [path] = report.plot(tmp_path / "figures")
    assert path.name == "propagation.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_layer_ranges() -> None:
    assert layer_ranges([]) == ""
    assert layer_ranges([4]) == "4"
    assert layer_ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8"


# ---------------------------------------------------------------------- the command line


def test_propagate_command_prints_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    from preflight.cli import main

    argv = ["propagate", "--sizes", "8,16,16,3", "--hidden", "relu", "--scheme", "lecun", "--samples", "64"]
    assert main([*argv, "--json", "--plot", "--out", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["layers"]) == 3 and data["recommendation"]["scheme"] == "he"
    assert (tmp_path / "propagation.png").exists()
    assert (
        main(["propagate", "--sizes", "2,8,8,1", "--hidden", "tanh", "--output", "sigmoid", "--data", "circles"]) == 0
    )
    assert "verdict:" in capsys.readouterr().out


def test_propagate_command_with_lsuv_is_healthy(capsys: pytest.CaptureFixture[str]) -> None:
    from preflight.cli import main

    sizes = ",".join(["8"] + ["32"] * 12 + ["3"])
    assert main(["propagate", "--sizes", sizes, "--hidden", "relu", "--scheme", "lsuv", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "healthy"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sizes", "8,x,3"], "--sizes: expected integers separated by commas or spaces"),
        (["--sizes", "8", "x"], "--sizes: expected integers separated by commas or spaces"),
        (["--sizes", "3,4,2", "--data", "circles"], "circles has 2 features"),
        (["--data", "mnist"], "--data: got 'mnist'"),
        (["--scheme", "nope"], "--scheme: got 'nope'; expected one of ['glorot'"),
        (["--samples", "1"], "--samples"),
        (["--seed", "-1"], "--seed: expected an integer >= 0, got -1"),
    ],
)
def test_propagate_command_rejects_bad_input_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from preflight.cli import main

    assert main(["propagate", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ---------------------------------------------------------------------- the public pieces of analyze
def test_layer_verdict_takes_the_first_that_applies_in_order_of_severity() -> None:
    calm = {"dead_fraction": None, "saturated_fraction": None, "forward_ratio": 1.0, "backward_ratio": 1.0}
    assert layer_verdict(calm) == "healthy"
    assert layer_verdict({**calm, "forward_ratio": 1e3}) == "exploding"
    assert layer_verdict({**calm, "backward_ratio": 1e-3}) == "vanishing"
    # forward 20 and backward 20 each pass, but together the signal grows 400x
    assert layer_verdict({**calm, "forward_ratio": 20.0, "backward_ratio": 20.0}) == "exploding"
    assert layer_verdict({**calm, "saturated_fraction": 0.5, "forward_ratio": 1e3}) == "saturated"
    assert layer_verdict({**calm, "dead_fraction": 0.6, "saturated_fraction": 0.5}) == "dead"
    assert layer_verdict({**calm, "forward_ratio": 1e3}, Thresholds(exploding=1e4)) == "healthy"


def test_overall_verdict_is_the_most_common_doubt_and_ties_go_to_the_more_severe() -> None:
    net, params, X, y = problem("relu", "he", depth=4, width=16, m=32)
    layers = list(quiet_analyze(net, params, X, y).layers)  # type: ignore[attr-defined]
    relabel = lambda *verdicts: [dataclasses.replace(s, verdict=v) for s, v in zip(layers, verdicts, strict=True)]  # noqa: E731
    assert overall_verdict(relabel("healthy", "healthy", "healthy", "healthy", "healthy")) == "healthy"
    assert overall_verdict(relabel("vanishing", "vanishing", "dead", "healthy", "healthy")) == "vanishing"
    assert overall_verdict(relabel("vanishing", "dead", "healthy", "healthy", "healthy")) == "dead"


def test_recommend_for_names_one_scheme_per_activation_and_refuses_unknown_ones() -> None:
    names = ("relu", "leaky_relu", "tanh", "sigmoid", "linear", "gelu", "silu", "elu", "softplus")
    assert [recommend_for([a]).scheme for a in names] == [
        "he",
        "he",
        "lecun",
        "glorot",
        "orthogonal",
        "he",
        "he",
        "he",
        "he",
    ]
    assert recommend_for(["relu", "tanh", "relu"]).scheme == "lsuv"
    with pytest.raises(ValueError, match=r"activations: expected names among .*got 'mish'"):
        recommend_for(["mish"])


def test_saturated_fraction_counts_the_flat_ends_of_bounded_activations_only() -> None:
    z = np.array([-6.0, -1.0, 0.0, 1.0, 6.0])
    assert saturated_fraction("tanh", np.tanh(z)) == pytest.approx(0.4)
    assert saturated_fraction("sigmoid", 1 / (1 + np.exp(-z))) == pytest.approx(0.4)
    assert saturated_fraction("tanh", np.tanh(z), level=0.5) == pytest.approx(0.8)
    assert saturated_fraction("relu", np.maximum(z, 0)) is None


def test_thresholds_must_be_a_thresholds_object() -> None:
    net, params, X, y = problem("relu", "he", depth=2, width=8, m=16)
    with pytest.raises(ValueError, match=r"thresholds: expected a Thresholds \(e.g. Thresholds\(vanishing=1e-3\)\)"):
        analyze(net, params, X, y, thresholds={"vanishing": 1e-3})  # type: ignore[arg-type]
