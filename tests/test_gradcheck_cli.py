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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sample", "2.5"], "--sample: expected a fraction in (0, 1) or a whole number of coordinates, got 2.5"),
        (["--sample", "inf"], "--sample: expected a fraction in (0, 1) or a whole number of coordinates, got inf"),
        (["--sample", "-1"], "sample: expected a fraction in (0, 1] or a number of coordinates >= 1, got -1.0"),
        (["--seed", "-1"], "--seed: expected an integer >= 0, got -1"),
        (["--batch", "0"], "--batch: expected an integer >= 1, got 0"),
        (["--batch", "-3"], "--batch: expected an integer >= 1, got -3"),
        (["--sizes", "4", "3", "--batch", "100000000000"], "not enough memory"),
    ],
)
def test_bad_options_exit_2_with_one_line_naming_them(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gradcheck", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


USER_CODE = {
    "make_raises": "def make():\n    raise ZeroDivisionError('division by zero')\n",
    "loss_raises": (
        "import numpy as np\ndef make():\n    return (lambda p: 1 / 0, {'w': np.ones(2)}, {'w': np.ones(2)})\n"
    ),
    "grads_raise": (
        "import numpy as np\n"
        "def make():\n"
        "    def grads(p):\n"
        "        raise KeyError('b')\n"
        "    return (lambda p: float(np.sum(p['w'])), {'w': np.ones(2)}, grads)\n"
    ),
}


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("make_raises", "target: qa_make_raises:make() raised ZeroDivisionError: division by zero"),
        ("loss_raises", "target: the loss raised ZeroDivisionError"),
        ("grads_raise", "target: the gradient raised KeyError: 'b'"),
    ],
)
def test_an_exception_in_the_users_code_is_one_line_naming_it_not_a_traceback(
    module: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Exit code 1 means "the check failed"; a crash in the user's code must not be mistaken for that.
    (tmp_path / f"qa_{module}.py").write_text(USER_CODE[module])
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["gradcheck", f"qa_{module}:make"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    sys.modules.pop(f"qa_{module}", None)


def test_network_options_with_a_target_are_refused_not_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gradcheck", "json:loads", "--sizes", "3", "--dtype", "float32"]) == 2
    err = capsys.readouterr().err
    assert "--sizes, --dtype: options of the reference network, which a target (json:loads) replaces" in err


@pytest.mark.parametrize("sizes", [["4,6,3"], ["4", "6", "3"], ["4,", "6,", "3"], ["4, 6, 3"]])
def test_sizes_take_commas_spaces_or_both_in_every_command(
    sizes: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gradcheck", "--sizes", *sizes, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parameters"]["W1"]["shape"] == [6, 4]
    assert main(["propagate", "--sizes", *sizes, "--samples", "16", "--json"]) == 0
    assert [layer["layer"] for layer in json.loads(capsys.readouterr().out)["layers"]] == [1, 2]


def test_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["gradcheck", "--help"])
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out and "preflight gradcheck --bug factor-2" in out
