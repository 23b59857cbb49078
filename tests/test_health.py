"""Verdicts over time (propagation.Timeline), their report, and the NumPy HealthCallback for Network.fit."""

from __future__ import annotations

import io
import json
import math
import warnings
from typing import Any

import numpy as np
import pytest

from preflight.nn import Network
from preflight.propagation import (
    COLUMNS,
    HealthCallback,
    HealthReport,
    HealthWarning,
    Thresholds,
    Timeline,
    analyze,
    layer_verdict,
    step_verdict,
)

HEALTHY = {"dead_fraction": 0.0, "saturated_fraction": None, "forward_ratio": 1.0, "backward_ratio": 1.0}


def row(layer: int = 1, **figures: Any) -> dict[str, Any]:
    return {"layer": layer, "name": f"fc{layer}", "activation": "relu", **HEALTHY, **figures}


# ---------------------------------------------------------------------- the rule at one step is the one-point rule


@pytest.mark.parametrize(
    "figures",
    [
        {"dead_fraction": 0.5},
        {"dead_fraction": 0.49},
        {"dead_fraction": None, "saturated_fraction": 0.3},
        {"forward_ratio": 101.0},
        {"backward_ratio": 0.0099},
        {"forward_ratio": 0.09, "backward_ratio": 0.1},
        {},
    ],
)
def test_a_step_is_judged_by_the_one_point_rule(figures: dict[str, Any]) -> None:
    stats = {**HEALTHY, **figures}
    assert step_verdict(stats) == layer_verdict(stats)
    custom = Thresholds(dead=0.3, vanishing=1e-3)
    assert step_verdict(stats, custom) == layer_verdict(stats, custom)


# ---------------------------------------------------------------------- when a verdict counts, begins and ends


def test_a_verdict_counts_after_patience_steps_and_began_at_the_first() -> None:
    timeline = Timeline(patience=3)
    new = [timeline.observe(step, [row(dead_fraction=0.8 if step >= 20 else 0.0)]) for step in range(0, 60, 10)]
    assert [len(n) for n in new] == [0, 0, 0, 0, 1, 0]  # counted at step 40, the third dead step
    (verdict,) = timeline.verdicts()
    assert (verdict.verdict, verdict.layers, verdict.began, verdict.ended) == ("dead", (1,), 20, None)


def test_one_odd_step_is_no_verdict_and_a_hovering_fraction_is_one_spell() -> None:
    timeline = Timeline(patience=2)
    for step, fraction in enumerate([0.0, 0.9, 0.0, 0.0, 0.6, 0.6, 0.4, 0.6, 0.4, 0.4, 0.0]):
        timeline.observe(step, [row(dead_fraction=fraction)])
    (verdict,) = timeline.verdicts()
    assert (verdict.began, verdict.ended) == (4, 8)  # absent at 8 and 9: ended at 8; the dip at 6 did not end it


def test_layers_with_overlapping_spells_are_one_verdict_named_by_their_range() -> None:
    timeline = Timeline(patience=1)
    for step in (0, 10, 20):
        rows = [
            row(layer, backward_ratio=1e-3 if layer >= 3 and (step > 0 or layer == 3) else 1.0) for layer in range(1, 6)
        ]
        timeline.observe(step, rows)
    (verdict,) = timeline.verdicts()
    assert verdict.layers == (3, 4, 5) and verdict.began == 0
    assert verdict.message.startswith("vanishing signal in layers 3-5 of 5 since step 0: backward ratio")
    assert "threshold 0.01" in verdict.message and verdict.value == pytest.approx(1e-3)


def test_large_updates_say_how_fast_they_grow_and_the_dead_verdict_quotes_the_learning_rate() -> None:
    timeline = Timeline(patience=1)
    for step in range(0, 500, 50):
        ratio = 1e-3 * 10 ** (max(step - 200, 0) / 100)  # 10x per 100 steps from step 200
        timeline.history.learning_rates[step] = 0.5 if step >= 400 else 0.05
        timeline.observe(step, [row(update_ratio=ratio, dead_fraction=0.7 if step >= 450 else 0.0)])
    large, dead = (next(v for v in timeline.verdicts() if v.verdict == kind) for kind in ("large_updates", "dead"))
    # 1e-3 * 10^((step - 200) / 100): 0.1 at step 400 (not above the limit), 0.32 at 450.
    assert large.began == 450 and "update/weight ratio 0.32 (rule of thumb ~0.001, limit 0.1)" in large.message
    assert "growing 10x per 100 steps" in large.message
    assert "the learning rate rose from 0.05 to 0.5" in dead.message and "updates reached 0.32 x |W|" in dead.message


def test_the_first_nonfinite_value_is_kept_once() -> None:
    timeline = Timeline()
    first = timeline.record_nonfinite(12, "layer 2 (fc2: Linear) activations", [2])
    assert first is not None and first.message == "first non-finite value: layer 2 (fc2: Linear) activations at step 12"
    assert timeline.record_nonfinite(13, "layer 1", [1]) is None
    assert timeline.verdicts() == [first]


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"patience": 0}, "patience: expected an integer >= 1"),
        ({"max_update_ratio": 0.0}, "max_update_ratio: expected a number in"),
        ({"thresholds": {"dead": 0.5}}, "thresholds: expected a Thresholds"),
    ],
)
def test_bad_settings_are_named(arguments: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Timeline(**arguments)


# ---------------------------------------------------------------------- the history


def test_the_history_round_trips_through_csv_and_pandas() -> None:
    pandas = pytest.importorskip("pandas")
    timeline = Timeline(patience=1)
    for step in (0, 50):
        timeline.history.losses[step] = 1.0 / (step + 1)
        timeline.observe(step, [row(1, std=0.5, update_ratio=1e-3), row(2, std=2.0, saturated_fraction=None)])
    history = timeline.history
    back = pandas.read_csv(io.StringIO(history.to_csv()))
    assert list(back.columns) == list(COLUMNS) and back.shape == (4, len(COLUMNS))
    frame = history.to_frame()
    assert list(frame["loss"]) == [1.0, 1.0, 1 / 51, 1 / 51] and list(frame["std"]) == [0.5, 2.0, 0.5, 2.0]
    layers, steps, grid = history.grid("std")
    assert (layers, steps, grid) == ([1, 2], [0, 50], [[0.5, 0.5], [2.0, 2.0]])
    with pytest.raises(ValueError, match="columns among"):
        history.append({"step": 0, "tensor": 1})
    with pytest.raises(ValueError, match="statistic: expected one of"):
        history.grid("verdict")


# ---------------------------------------------------------------------- the reference network's callback


def problem(hidden: str = "relu", depth: int = 4, seed: int = 0) -> tuple[Network, Any, Any]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((128, 8))
    y = (X[:, 0] * X[:, 1] > 0).astype(int) + (X[:, 2] > 0)
    return Network([8] + [32] * depth + [3], hidden=hidden, output="softmax"), X, y


def test_the_callback_records_the_one_point_figures_and_the_measured_update() -> None:
    net, X, y = problem()
    seen: dict[int, dict[str, Any]] = {}

    def oracle(iteration: int, params: dict[str, Any]) -> None:
        seen[iteration] = {k: v.copy() for k, v in params.items()}

    health = HealthCallback(net, X, y, every=5, warn=False)
    net.fit(net.init(0, "he"), X, y, learning_rate=0.1, iterations=12, callbacks=[oracle, health])
    history = health.report().history
    assert history.steps == [0, 5, 10]
    for step in (0, 5, 10):
        expected = analyze(net, seen[step], X, y, warn=False)
        rows = [r for r in history.rows() if r["step"] == step]
        for s, r in zip(expected.layers, rows, strict=True):
            assert (r["verdict"], r["std"], r["delta_norm"]) == (s.verdict, s.std, s.delta_norm)
            w0, w1 = seen[step][f"W{s.layer}"], seen[step + 1][f"W{s.layer}"]
            assert r["update_ratio"] == pytest.approx(np.linalg.norm(w1 - w0) / np.linalg.norm(w0), rel=1e-12)


def test_the_callback_finds_saturation_from_the_start_and_names_the_first_nonfinite_parameters() -> None:
    net, X, y = problem("tanh", depth=6)
    health = HealthCallback(net, X, y, every=10, warn=False)
    net.fit(net.init(0, "standard_normal"), X, y, learning_rate=0.01, iterations=30, callbacks=[health])
    (saturated,) = health.report().verdicts
    assert saturated.verdict == "saturated" and saturated.began == 0 and saturated.layers[0] == 1

    net, X, y = problem("relu", depth=4)
    first_bad: list[int] = []
    health = HealthCallback(net, X, y, every=100, warn=False)

    def oracle(iteration: int, params: dict[str, Any]) -> None:
        if not first_bad and not all(np.isfinite(v).all() for v in params.values()):
            first_bad.append(iteration)
            first_bad.append(next(k for k in range(1, 6) if not np.isfinite(params[f"W{k}"]).all()
                                  or not np.isfinite(params[f"b{k}"]).all()))  # fmt: skip

    with np.errstate(all="ignore"):
        net.fit(net.init(0, "he"), X, y, learning_rate=3.0, iterations=40, callbacks=[oracle, health])
    (nonfinite,) = [v for v in health.report().verdicts if v.verdict == "nonfinite"]
    assert (nonfinite.began, nonfinite.layers) == (first_bad[0], (first_bad[1],))
    assert f"layer {first_bad[1]} parameters" in nonfinite.message


def test_a_healthy_numpy_run_has_no_verdict_and_a_report_in_every_form() -> None:
    net, X, y = problem()
    health = HealthCallback(net, X, y, every=25, learning_rate=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error", HealthWarning)
        net.fit(net.init(0, "he"), X, y, learning_rate=0.05, iterations=500, callbacks=[health])
    report = health.report()
    assert isinstance(report, HealthReport) and report.healthy and report.steps == 500
    assert "no verdict: every layer healthy at every monitored step" in str(report)
    assert json.loads(report.to_json())["healthy"] is True
    assert repr(report) == "HealthReport(500 steps, every 25, 5 layers: healthy)"
    assert all(not math.isnan(v) for v in report.history.learning_rates.values())


def test_bad_callback_arguments_are_named() -> None:
    net, X, y = problem()
    with pytest.raises(ValueError, match=r"net: expected a preflight\.nn\.Network"):
        HealthCallback("net", X, y)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="y: expected 128 labels"):
        HealthCallback(net, X, y[:5])
    with pytest.raises(ValueError, match="every: expected an integer >= 1"):
        HealthCallback(net, X, y, every=0)
