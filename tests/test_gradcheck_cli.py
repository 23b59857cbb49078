"""``preflight gradcheck`` on the reference network (with planted bugs) and on a user's module:function."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from preflight.cli import main


def test_a_correct_network_passes_with_exit_code_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradcheck", "--sizes", "4", "6", "3", "--dtype", "float32"]) == 0
    assert capsys.readouterr().out.startswith("Gradient check: PASSED (float32")


def test_a_planted_bug_fails_with_exit_code_1_and_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradcheck", "--sizes", "4", "6", "5", "3", "--bug", "sign", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False and report["worst"] == "W3"
    assert "W3: analytic = -1.00 x numeric: a sign flip" in report["hints"]


def test_module_function_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "usercode.py").write_text(
        "import numpy as np\n"
        "def make():\n"
        "    params = {'w': np.array([1.0, -2.0, 0.5])}\n"
        "    return (lambda p: float(np.sum(p['w'] ** 4)), params, lambda p: {'w': 4 * p['w'] ** 3})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["gradcheck", "usercode:make"]) == 0
    assert "w " in capsys.readouterr().out
    sys.modules.pop("usercode", None)


@pytest.mark.parametrize("target", ["nocolon", "no_such_module_xyz:make", "json:no_such_function"])
def test_bad_targets_exit_2_with_one_line(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradcheck", target]) == 2
    err = capsys.readouterr().err
    assert err.startswith("preflight gradcheck: error: target:") and err.count("\n") == 1
