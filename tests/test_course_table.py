"""The course's initialization table, reproduced by the reference network (not copied)."""

from __future__ import annotations

import json

import pytest

from preflight.cli import main
from preflight.experiments import init_schemes

pytest.importorskip("sklearn")

# Published by the course (shared/ANCHORS.md); He costs to 1e-9 relative, accuracies exactly.
HE_COST_AT_0 = 0.8830537463419761
HE_COST_AT_14000 = 0.07357895962677366


@pytest.fixture(scope="module")
def table() -> init_schemes.InitSchemesResult:
    return init_schemes.run()


@pytest.mark.slow
def test_he_initialization_matches_the_course(table) -> None:
    he = next(r for r in table.runs if r.scheme == "He")
    assert he.iterations == list(range(0, 15000, 1000))
    assert he.costs[0] == pytest.approx(HE_COST_AT_0, rel=1e-9)
    assert he.costs[14] == pytest.approx(HE_COST_AT_14000, rel=1e-9)
    assert (he.train_accuracy, he.test_accuracy) == (0.9933333333333333, 0.96)


@pytest.mark.slow
def test_zero_initialization_never_breaks_symmetry(table) -> None:
    zeros = next(r for r in table.runs if r.scheme == "zeros")
    assert zeros.costs == pytest.approx([0.6931471805599453] * 15, rel=1e-9)
    assert (zeros.train_accuracy, zeros.test_accuracy) == (0.5, 0.5)


@pytest.mark.slow
def test_large_random_initialization_matches_the_course_accuracies(table) -> None:
    big = next(r for r in table.runs if r.scheme == "randn x 10")
    # The course prints inf (log(0) of a saturated sigmoid); from logits the first cost is large but finite.
    assert 10 < big.costs[0] < float("inf")
    assert big.costs[14] == pytest.approx(0.3828, abs=5e-4)
    assert (big.train_accuracy, big.test_accuracy) == (0.83, 0.86)
    assert "log(0)" in str(table)


def test_the_command_prints_json_with_the_documented_keys(capsys) -> None:
    assert main(["experiment", "init-schemes", "--iterations", "1001", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["runs"]
    assert [r["scheme"] for r in rows] == ["zeros", "randn x 10", "He"]
    assert set(rows[0]) == {"scheme", "iterations", "costs", "train_accuracy", "test_accuracy"}
    assert rows[2]["costs"][0] == pytest.approx(HE_COST_AT_0, rel=1e-9)
    assert len(rows[2]["costs"]) == 2  # iterations 0 and 1000
