"""What a sampled check proved: the per-tensor chance of having caught an error on 1 % of the elements."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from preflight import gradcheck
from preflight.check.guarantee import detection_probability
from preflight.torch import check_module


@pytest.mark.parametrize(("size", "checked"), [(10, 1), (10, 3), (100, 16), (250, 40), (1000, 200), (57, 56)])
def test_the_chance_is_the_exact_hypergeometric_one(size: int, checked: int) -> None:
    broken = max(1, math.ceil(0.01 * size))
    exact = 1 - math.comb(size - broken, checked) / math.comb(size, checked)
    assert detection_probability(size, checked) == pytest.approx(exact, rel=1e-12, abs=1e-15)


def test_the_chance_tends_to_the_binomial_form_for_a_large_tensor() -> None:
    for checked in (16, 300, 2000):
        assert detection_probability(10**8, checked) == pytest.approx(1 - 0.99**checked, rel=1e-4)


def test_the_chance_is_zero_with_nothing_checked_and_one_with_everything() -> None:
    assert detection_probability(500, 0) == 0.0
    assert detection_probability(500, 500) == 1.0
    assert detection_probability(500, 496) == 1.0  # 5 broken, 4 unchecked: one of them was checked


def test_a_simulated_sample_catches_as_often_as_stated() -> None:
    rng = np.random.default_rng(0)
    size, checked, trials = 400, 30, 20_000
    broken = rng.random((trials, size)).argsort(axis=1)[:, :4]  # 1 % of 400
    caught = (broken < checked).any(axis=1).mean()  # the sample: the first `checked` coordinates
    stated = detection_probability(size, checked)
    assert abs(caught - stated) < 4 * math.sqrt(stated * (1 - stated) / trials)


def _sampled_report() -> object:
    rng = np.random.default_rng(1)
    params = {"W": rng.normal(size=(40, 50)), "b": rng.normal(size=40)}

    def loss(p: dict[str, np.ndarray]) -> float:
        return float(np.sum(np.tanh(p["W"]) ** 2) + np.sum(p["b"] ** 3))

    grads = {"W": 2 * np.tanh(params["W"]) / np.cosh(params["W"]) ** 2, "b": 3 * params["b"] ** 2}
    return gradcheck(loss, params, grads, sample=0.05, seed=0)


def test_the_report_of_a_sampled_check_shows_the_chance_per_tensor_in_text_html_and_json() -> None:
    report = _sampled_report()
    assert report.sampled and report.passed  # type: ignore[attr-defined]
    w = report.parameters["W"]  # type: ignore[attr-defined]
    assert w.checked < w.size and w.detection == pytest.approx(detection_probability(w.size, w.checked))
    text = str(report)
    assert "caught 1 %" in text and f"{w.detection:.3f}" in text
    assert "caught 1 %" in report._repr_html_() and f"{w.detection:.3f}" in report._repr_html_()  # type: ignore[attr-defined]
    data = json.loads(report.to_json())  # type: ignore[attr-defined]
    assert data["parameters"]["W"]["detection_1pct"] == pytest.approx(w.detection)


def test_a_full_check_states_certainty_and_shows_no_sampling_column() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    batch = (torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1]))
    report = check_module(model, F.cross_entropy, batch)
    assert all(r.detection == 1.0 for r in report.parameters.values())
    assert "caught 1 %" not in str(report)


def test_a_sampled_check_of_a_conv_net_reports_every_tensor_sampled() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
        nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 5),
    ).double().eval()  # fmt: skip
    batch = (torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 3]))
    report = check_module(model, F.cross_entropy, batch, sample=0.1)
    assert report.sampled and report.notes[0].startswith("strategy: graph")
    assert all(r.checked >= 1 for r in report.parameters.values())
    big = report.parameters["3.weight"]  # 4,608 elements, 461 sampled
    assert big.checked < big.size and big.detection > 0.95
