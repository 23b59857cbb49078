"""The command line under hostile input and faults (issue #13), end to end in a subprocess.

Exit codes: 0 passed (or done), 1 the check failed, 2 anything else, 130 interrupted; on 2 and 130, one line on
stderr and no traceback. Files: an input is never overwritten, a symlink stays a link, a FIFO stays a FIFO, a
private file stays private. Links, FIFOs and files are made here in tmp_path, never the system's /dev nodes.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import preflight

TABLE = "a,b,y\n1,10,0\n3,30,1\n4,20,0\n"


#: The folder holding the preflight these tests imported: the subprocesses run the same code from any folder.
SOURCE = str(Path(preflight.__file__).resolve().parents[1])
ENVIRONMENT = {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "preflight", *args]


def run(*args: str, cwd: Path, **options: Any) -> subprocess.CompletedProcess[str]:
    """``python -m preflight ARGS`` in ``cwd``."""
    return subprocess.run(
        command(*args), cwd=cwd, env=ENVIRONMENT, capture_output=True, text=True, timeout=300, **options
    )


def refused(result: subprocess.CompletedProcess[str], *phrases: str, code: int = 2) -> None:
    """Exit ``code`` with a single line on stderr that holds every phrase, and no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    path.write_text(TABLE)
    return path


@pytest.fixture
def stats(table: Path, tmp_path: Path) -> Path:
    path = tmp_path / "stats.json"
    assert run("normalize", "fit", str(table), "--label", "y", "-o", str(path), cwd=tmp_path).returncode == 0
    return path


# ---------------------------------------------------------------------- 1. an output that is an input
def test_fit_refuses_to_write_its_statistics_over_the_training_table(table: Path, tmp_path: Path) -> None:
    link = tmp_path / "also-train.csv"
    link.symlink_to(table)
    for output in ("train.csv", str(table), "./train.csv", str(link)):
        result = run("normalize", "fit", "train.csv", "--label", "y", "-o", output, cwd=tmp_path)
        refused(result, "--output", "would destroy the input")
        assert table.read_text() == TABLE and link.is_symlink()


def test_apply_refuses_to_write_over_the_table_it_reads(table: Path, stats: Path, tmp_path: Path) -> None:
    hard = tmp_path / "hard-link.csv"
    os.link(table, hard)
    for output in (str(table), str(hard)):
        refused(run("normalize", "apply", str(stats), str(table), "-o", output, cwd=tmp_path), "--output")
        assert table.read_text() == TABLE


# ---------------------------------------------------------------------- 2, 3. what the output file stays
def test_fit_writes_through_a_symlink_and_keeps_a_private_files_mode(table: Path, tmp_path: Path) -> None:
    private = tmp_path / "vault" / "stats.json"
    private.parent.mkdir()
    private.write_text("{}")
    private.chmod(0o600)
    link = tmp_path / "stats.json"
    link.symlink_to(private)
    result = run("normalize", "fit", str(table), "--label", "y", "-o", str(link), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(private)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert json.loads(private.read_text())["format"] == "preflight.Standardizer"
    assert table.read_text() == TABLE


def test_fit_writes_into_a_fifo_and_leaves_it_a_fifo(table: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "stats.pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        result = run("normalize", "fit", str(table), "--label", "y", "-o", str(fifo), cwd=tmp_path)
        received = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(received)["format"] == "preflight.Standardizer"


def test_dash_sends_the_data_to_stdout_and_the_report_to_stderr(table: Path, stats: Path, tmp_path: Path) -> None:
    fitted = run("normalize", "fit", str(table), "--label", "y", "-o", "-", cwd=tmp_path)
    assert fitted.returncode == 0 and json.loads(fitted.stdout)["format"] == "preflight.Standardizer"
    assert "Standardizer fitted on 3 samples" in fitted.stderr
    applied = run("normalize", "apply", str(stats), str(table), "-o", "-", cwd=tmp_path)
    assert applied.returncode == 0 and applied.stdout.splitlines()[0] == "a,b,y"
    assert len(applied.stdout.splitlines()) == 4 and "wrote 3 rows" in applied.stderr
    assert not (tmp_path / "-").exists()


# ---------------------------------------------------------------------- 5. the user's code exits
USER_CODE = """
import sys
import numpy as np

def make(how=None):
    w = np.array([1.0, 2.0])

    def loss(params):
        if how == "exit-in-loss":
            sys.exit(0)
        if how == "interrupt":
            raise KeyboardInterrupt
        return float(np.sum(params["w"] ** 2))

    return loss, {"w": w}, {"w": 2 * w}

def exits_0():
    sys.exit(0)

def exits_msg():
    sys.exit("msg")

def exits_3():
    sys.exit(3)

def exit_in_loss():
    return make("exit-in-loss")

def interrupt():
    return make("interrupt")
"""


@pytest.fixture
def user_code(tmp_path: Path) -> Path:
    (tmp_path / "usercode.py").write_text(USER_CODE)
    (tmp_path / "exits_at_import.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "bad_syntax.py").write_text("def make(:\n")
    (tmp_path / "raises_at_import.py").write_text("raise RuntimeError('boom at import')\n")
    return tmp_path


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("exits_at_import:make", "importing 'exits_at_import' called sys.exit(0)"),
        ("usercode:exits_0", "usercode:exits_0() called sys.exit(0)"),
        ("usercode:exits_msg", "called sys.exit('msg')"),
        ("usercode:exits_3", "called sys.exit(3)"),
        ("usercode:exit_in_loss", "the loss called sys.exit(0)"),
    ],
)
def test_sys_exit_in_the_users_code_is_exit_2_not_a_verdict(user_code: Path, target: str, said: str) -> None:
    refused(run("gradcheck", target, cwd=user_code), said, "the gradient was not checked")


def test_an_interrupt_in_the_users_code_is_130_with_one_line(user_code: Path) -> None:
    refused(run("gradcheck", "usercode:interrupt", cwd=user_code), "interrupted", code=130)


def test_a_working_target_still_passes(user_code: Path) -> None:
    assert run("gradcheck", "usercode:make", cwd=user_code).returncode == 0


# ---------------------------------------------------------------------- 6, 8. closed pipes and streams
def test_a_closed_pipe_keeps_the_checks_exit_code(tmp_path: Path) -> None:
    # `preflight gradcheck --bug factor-2 | head -1`: the reader is gone before the report is written.
    for args, code in ((["--bug", "factor-2"], 1), ([], 0)):
        process = subprocess.Popen(
            command("gradcheck", *args),
            cwd=tmp_path,
            env=ENVIRONMENT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        process.stdout.close()
        _, err = process.communicate(timeout=300)
        assert process.returncode == code and "Traceback" not in err, (args, process.returncode, err)


def test_closed_stdout_or_stderr_do_not_change_the_exit_code(table: Path, tmp_path: Path) -> None:
    def closing(fd: int) -> Any:
        return lambda: os.close(fd)

    fit = ["normalize", "fit", str(table), "--label", "y", "-o", str(tmp_path / "s.json")]
    assert run(*fit, cwd=tmp_path, preexec_fn=closing(2)).returncode == 0  # `2>&-`
    assert json.loads((tmp_path / "s.json").read_text())["n_features_in"] == 2
    passed = run("gradcheck", cwd=tmp_path, preexec_fn=closing(1))  # `>&-`
    assert passed.returncode == 0 and passed.stderr == ""
    failed = run("gradcheck", "--bug", "factor-2", cwd=tmp_path, preexec_fn=closing(1))
    assert failed.returncode == 1 and failed.stderr == ""
    broken = run("normalize", "fit", "missing.csv", "-o", "s.json", cwd=tmp_path, preexec_fn=closing(2))
    assert broken.returncode == 2


# ---------------------------------------------------------------------- 7. tracebacks that were exit 1
def test_a_target_that_cannot_be_imported_is_exit_2_with_one_line(user_code: Path) -> None:
    refused(run("gradcheck", "bad_syntax:make", cwd=user_code), "importing 'bad_syntax'", "SyntaxError")
    refused(run("gradcheck", "raises_at_import:make", cwd=user_code), "RuntimeError: boom at import")
    refused(run("gradcheck", ".usercode:make", cwd=user_code), "expected an absolute module name")


@pytest.mark.slow
def test_a_loss_returning_a_tensor_that_requires_grad_is_exit_2(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "torchloss.py").write_text(
        "import numpy as np, torch\n"
        "def make():\n"
        "    w = np.array([1.0, 2.0])\n"
        "    loss = lambda p: (torch.tensor(p['w'], requires_grad=True) ** 2).sum()\n"
        "    return loss, {'w': w}, {'w': 2 * w}\n"
    )
    refused(run("gradcheck", "torchloss:make", cwd=tmp_path), "loss: expected a scalar number", "loss.item()")


def test_an_empty_npy_and_a_deeply_nested_statistics_file_are_exit_2(table: Path, stats: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    refused(run("normalize", "fit", str(empty), "-o", "s.json", cwd=tmp_path), "empty.npy is not a readable")
    np.save(tmp_path / "ok.npy", np.ones((3, 2)))
    refused(run("normalize", "apply", str(stats), str(empty), "-o", "o.npy", cwd=tmp_path), "empty.npy")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    refused(run("normalize", "apply", str(deep), str(table), "-o", "o.csv", cwd=tmp_path), "deep.json")
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.npy").exists()


# ---------------------------------------------------------------------- 9. float16 tables
def test_apply_on_a_float16_table_writes_no_infinity(tmp_path: Path) -> None:
    X = np.float16([[60000, 1], [65000, 2], [-65504, 3]])
    np.save(tmp_path / "half.npy", X)
    assert run("normalize", "fit", "half.npy", "-o", "s.json", cwd=tmp_path).returncode == 0
    result = run("normalize", "apply", "s.json", "half.npy", "-o", "z.npy", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    z = np.load(tmp_path / "z.npy")
    exact = (X.astype(np.float64) - X.astype(np.float64).mean(0)) / X.astype(np.float64).std(0)
    assert z.dtype == np.float16 and np.isfinite(z).all()
    # float16 keeps 11 significant bits: one rounding of the float64 result is within 2**-11 of it, relatively.
    assert np.allclose(z, exact, rtol=2**-10, atol=0)


# ---------------------------------------------------------------------- 14, 15. messages that name the argument
def test_bad_arguments_and_paths_name_what_is_wrong(table: Path, stats: Path, tmp_path: Path) -> None:
    fit = ["normalize", "fit", str(table)]
    refused(run(*fit, "-o", "s.json", "--chunk-rows", str(10**20), cwd=tmp_path), "chunk_rows: expected at most")
    refused(run(*fit, "-o", "", cwd=tmp_path), "-o/--output: expected a file name")
    refused(run("normalize", "fit", str(tmp_path), "-o", "s.json", cwd=tmp_path), "is a folder")
    refused(run("normalize", "apply", str(tmp_path), str(table), "-o", "o.csv", cwd=tmp_path), "is a folder")
    huge = json.loads(stats.read_text())
    text = json.dumps(huge).replace('"n_features_in": 2', '"n_features_in": ' + "9" * 5000)
    (tmp_path / "huge.json").write_text(text)
    refused(run("normalize", "apply", "huge.json", str(table), "-o", "o.csv", cwd=tmp_path), "huge.json")
    refused(run("experiment", "numdiff", "--points", "100000", cwd=tmp_path), "points: expected an integer")


def test_an_overlong_message_is_cut_to_one_readable_line(tmp_path: Path) -> None:
    # 5,000 columns of NaN: the error names the first 20 features and counts the rest.
    columns = 5000
    (tmp_path / "wide.csv").write_text(",".join(f"c{i}" for i in range(columns)) + "\n" + "," * (columns - 1) + "\n")
    result = run("normalize", "fit", "wide.csv", "-o", "s.json", cwd=tmp_path)
    refused(result, "'c19'] and 4,980 more (5,000 in all)")
    assert len(result.stderr) < 1000


def test_an_unexpected_error_is_exit_2_with_one_line_not_the_1_of_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A traceback exits 1, which reads as "the check failed"; a bug of ours (or a library's) must not.
    import preflight.cli.propagate as propagate
    from preflight.cli import main

    def broken(args: Any) -> int:
        raise TypeError("an unforeseen case")

    monkeypatch.setattr(propagate, "_handle", broken)
    assert main(["propagate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: TypeError: an unforeseen case" in err
