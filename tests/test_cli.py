"""The command line: help everywhere, --json, exit code 2 with one line on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from preflight.cli import COMMANDS, build_parser, main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "preflight", *args], capture_output=True, text=True, timeout=300)


def test_every_command_has_help(capsys) -> None:
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: preflight" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["experiment", "init-schemes", "--iterations", "0"], "iterations: expected an integer >= 1, got 0"),
        (["experiment", "nonsense"], "invalid choice"),
        (["bogus-command"], "invalid choice"),
        (["experiment", "init-schemes", "--iterations", "many"], "invalid int value"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(args, message) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_tour_quick_runs_and_prints_json(capsys, tmp_path) -> None:
    pytest.importorskip("sklearn")
    assert main(["tour", "--quick", "--json", "-o", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "initialization" in summary["sections"]


def test_parser_lists_the_registered_commands() -> None:
    help_text = build_parser().format_help()
    assert all(name in help_text for name in COMMANDS)


def test_a_closed_pipe_is_not_a_traceback() -> None:
    # stdout is a pipe whose reader is already gone, as in `preflight ... | head` once head has exited.
    code = (
        "import os, sys\n"
        "reader, writer = os.pipe(); os.close(reader); sys.stdout = os.fdopen(writer, 'w')\n"
        "from preflight.cli import main\n"
        "code = main(['experiment', 'init-schemes', '--iterations', '1000'])\n"
        "sys.stderr.write(f'exit={code}')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.endswith("exit=0") and "Traceback" not in result.stderr
