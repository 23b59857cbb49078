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


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from preflight import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"preflight {__version__}\n"


def test_files_that_cannot_be_written_and_sizes_that_cannot_be_allocated_exit_2(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    # These were tracebacks with exit code 1, which the checks use for "failed".
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        (["propagate", "--sizes", "4,8,3", "--plot", "--out", str(blocker)], f"File exists: {blocker}"),
        (["propagate", "--samples", "100000000000"], "not enough memory"),
        (["propagate", "--sizes", "4,3", "--hidden", "foo"], "hidden: got 'foo'"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_a_short_init_schemes_run_shows_its_last_cost_not_the_first_twice(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "init-schemes", "--iterations", "10"]) == 0
    header = capsys.readouterr().out.splitlines()[2]
    assert "cost at 0" in header and "cost at 9" in header
