"""``preflight experiment depth``: the ANCHORS.md figures, W = aI growing as a^L, He learns where LeCun stalls."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from preflight.cli import main
from preflight.experiments import EXPERIMENTS, depth

#: ANCHORS.md, "Signal propagation (50 layers of width 512, post-activation std)": layers 1, 10, 50.
ANCHORS = {
    "tanh, N(0, 0.01^2)": (0.216, 3.3e-7, 5.2e-33),
    "tanh, N(0, 1)": (0.982, 0.982, 0.982),
    "tanh, LeCun 1/n": (0.627, 0.227, 0.0998),
    "ReLU, 1/n": (0.584, 0.0291, 2.0e-8),
    "ReLU, He 2/n": (0.826, 0.93, 0.68),
}
#: How far another random draw may move each figure (ratio either way): layer 1 averages 512 x batch entries of
#: one Gaussian layer (~1%); deeper layers multiply per-layer fluctuations of ~sqrt(2/512) ~ 6%, so ReLU's std at
#: layer 50 wanders by tens of percent and its 1e-8 by a factor ~2 (the tanh cases self-average).
SPREAD = {
    "tanh, N(0, 0.01^2)": (1.05, 1.2, 1.5),
    "tanh, N(0, 1)": (1.01, 1.01, 1.01),
    "tanh, LeCun 1/n": (1.05, 1.1, 1.1),
    "ReLU, 1/n": (1.05, 1.5, 3.0),
    "ReLU, He 2/n": (1.05, 1.5, 2.0),
}
VERDICTS = {
    "tanh, N(0, 0.01^2)": "vanishing",
    "tanh, N(0, 1)": "saturated",
    "tanh, LeCun 1/n": "healthy",
    "ReLU, 1/n": "vanishing",
    "ReLU, He 2/n": "healthy",
    "tanh, orthogonal": "healthy",
    "ReLU, orthogonal x sqrt 2": "healthy",
}


def test_registered() -> None:
    assert EXPERIMENTS["depth"] == "preflight.experiments.depth"


@pytest.mark.slow
def test_full_width_probes_reproduce_the_anchor_figures() -> None:
    result = depth.run(width=512, batch=16, iterations=0, cases=list(ANCHORS))
    rows = {row.scheme: row for row in result.schemes}
    assert list(rows) == list(ANCHORS) and result.training == []
    for scheme, expected in ANCHORS.items():
        measured = [rows[scheme].std[layer - 1] for layer in (1, 10, 50)]
        for got, want, spread in zip(measured, expected, SPREAD[scheme], strict=True):
            assert want / spread <= got <= want * spread, (scheme, measured, expected)
    assert {scheme: row.verdict for scheme, row in rows.items()} == {s: VERDICTS[s] for s in ANCHORS}
    # Backward: 1/n ReLU halves the squared gradient per layer (chi = 1/2), He keeps it (chi = 1).
    assert rows["ReLU, 1/n"].gradient_ratio < 1e-6 and 0.3 < rows["ReLU, He 2/n"].gradient_ratio < 3
    assert rows["ReLU, 1/n"].chi_predicted == pytest.approx(0.5, rel=0.02)
    assert rows["ReLU, He 2/n"].chi_predicted == pytest.approx(1.0, rel=0.02)
    assert rows["tanh, N(0, 1)"].gradient_ratio > 1e10  # chaotic: saturated forward, exploding backward


def test_deep_linear_network_grows_as_a_to_the_depth() -> None:
    result = depth.run(quick=True, depth=3, width=8, batch=4, iterations=0)
    for row in result.linear:
        # W = aI multiplies by exactly a per layer: only float64 rounding over 50 products (~1e-14).
        assert row.output_gain == pytest.approx(row.scale**row.depth, rel=1e-12)
        assert row.gradient_ratio == pytest.approx(row.scale ** (row.depth - 1), rel=1e-12)
    gains = {row.scale: row.output_gain for row in result.linear}
    assert gains[0.9] < 0.01 and gains[1.0] == pytest.approx(1.0) and gains[1.1] > 100


@pytest.mark.slow
def test_quick_run_through_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    assert main(["experiment", "depth", "--quick", "--json", "--plot", "--out", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {path.name for path in tmp_path.iterdir()} == {"depth_signal.png", "depth_linear.png", "depth_training.png"}
    runs = {run["scheme"]: run for run in data["training"]}
    lecun, he = runs["LeCun 1/n"], runs["He 2/n"]
    # LeCun: the 30-layer ReLU network's output is ~2^-15 of its input, so it stays at the uniform guess ln 10.
    assert max(abs(c - math.log(10)) for c in lecun["costs"]) < 0.01 and lecun["train_accuracy"] < 0.2
    # He: the same schedule learns; 200 steps are enough to leave ln 10 well behind (full run: ~99% accuracy).
    assert he["costs"][-1] < math.log(10) - 0.5 and he["train_accuracy"] > 0.3
    assert [row["verdict"] for row in data["schemes"]] == list(VERDICTS.values())


def test_table_lists_every_part() -> None:
    text = str(depth.run(quick=True, depth=12, width=16, batch=8, iterations=0))
    assert "std @ 10" in text and "std @ 12" in text and "a^L" in text and "ReLU, He 2/n" in text


def test_bad_options() -> None:
    with pytest.raises(ValueError, match=r"^depth"):
        depth.run(depth=0, iterations=0)
    with pytest.raises(ValueError, match=r"^cases"):
        depth.run(quick=True, iterations=0, cases=["ReLU, Xavier"])
    assert main(["experiment", "depth", "--width", "-3"]) == 2


def test_one_hidden_layer_has_no_gain_between_layers_to_show() -> None:
    table = str(depth.run(quick=True, depth=1, width=16, batch=16, iterations=1))
    rows = [line for line in table.splitlines() if line.startswith("tanh, N(0, 1) ")]
    assert rows and "n/a" in rows[0] and "nan" not in table.split("\n\n")[0]
