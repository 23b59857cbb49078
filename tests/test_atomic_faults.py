"""Fault injection for atomic writes: a writer killed at any point leaves the old file or the new one, never half,
and the next successful write leaves no temporary file behind (issue #13, item 4).

Each writer is a subprocess that loads ``preflight/_util/files.py`` on its own (no NumPy to import: fast) and dies
by ``os._exit`` at a chosen point of the write, or by SIGKILL from the test while it writes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import preflight._util.files as files
from preflight._util.files import TEMPORARY_MARK, atomic_write_bytes

OLD = b"the old statistics\n" * 100
NEW = bytes(range(256)) * 8192  # 2 MiB: long enough to be caught half written

#: Loads files.py by path, arms the fault, then writes NEW in two halves (slowly, in ``slow`` mode).
WRITER = r"""
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("files", sys.argv[1])
files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(files)
target, point = sys.argv[2], sys.argv[3]
new = bytes(range(256)) * 8192
real_mkstemp, real_replace = files.tempfile.mkstemp, os.replace

def die():
    os._exit(9)

def mkstemp(*args, **kwargs):
    real_mkstemp(*args, **kwargs)
    die()

def replace_then_die(source, destination):
    real_replace(source, destination)
    die()

if point == "after-create":
    files.tempfile.mkstemp = mkstemp
elif point == "before-fsync":
    os.fsync = lambda fd: die()
elif point == "before-rename":
    os.replace = lambda source, destination: die()
elif point == "after-rename":
    os.replace = replace_then_die
with files.atomic_open(target, binary=True) as handle:
    if point == "hold":  # half written, then wait for the test's word
        handle.write(new[: len(new) // 2])
        handle.flush()
        print("writing", flush=True)
        sys.stdin.readline()
        handle.write(new[len(new) // 2 :])
    elif point == "slow":
        print("writing", flush=True)
        for start in range(0, len(new), 1 << 15):
            handle.write(new[start : start + (1 << 15)])
            handle.flush()
            time.sleep(0.004)
    else:
        handle.write(new[: len(new) // 2])
        if point == "mid-write":
            handle.flush()
            die()
        handle.write(new[len(new) // 2 :])
"""

POINTS = ["after-create", "mid-write", "before-fsync", "before-rename", "after-rename"]


def temporaries(folder: Path, name: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}{TEMPORARY_MARK}"))


def writer(target: Path, point: str) -> list[str]:
    return [sys.executable, "-c", WRITER, files.__file__, str(target), point]


@pytest.mark.parametrize("point", POINTS)
def test_a_writer_killed_at_any_point_leaves_the_old_or_the_new_file(tmp_path: Path, point: str) -> None:
    target = tmp_path / "stats.json"
    target.write_bytes(OLD)
    result = subprocess.run(writer(target, point), capture_output=True, timeout=60)
    assert result.returncode == 9, result.stderr.decode()
    assert target.read_bytes() == (NEW if point == "after-rename" else OLD)
    atomic_write_bytes(target, b"the next write")
    assert target.read_bytes() == b"the next write"
    assert temporaries(tmp_path, "stats.json") == []


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15])
def test_a_writer_killed_by_sigkill_mid_write_leaves_the_old_file_and_no_stale_temporary(
    tmp_path: Path, delay: float
) -> None:
    target = tmp_path / "stats.json"
    target.write_bytes(OLD)
    process = subprocess.Popen(writer(target, "slow"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stdout.readline() == b"writing\n"
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL  # killed mid-write: 64 chunks take at least 0.25 s
    assert target.read_bytes() == OLD
    assert len(temporaries(tmp_path, "stats.json")) == 1  # what the killed writer left behind
    atomic_write_bytes(target, NEW)
    assert target.read_bytes() == NEW and temporaries(tmp_path, "stats.json") == []


def test_a_live_writer_keeps_its_temporary_file_while_another_write_completes(tmp_path: Path) -> None:
    # Two writers at once: the second one's cleanup must not take the first one's temporary file for stale.
    target = tmp_path / "stats.json"
    target.write_bytes(OLD)
    process = subprocess.Popen(
        writer(target, "hold"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == b"writing\n"
        atomic_write_bytes(target, b"the other writer")
        assert target.read_bytes() == b"the other writer"
        assert len(temporaries(tmp_path, "stats.json")) == 1  # still there: its writer lives
        _, err = process.communicate(b"go on\n", timeout=60)
        assert process.returncode == 0, err.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=60)
    assert target.read_bytes() == NEW and temporaries(tmp_path, "stats.json") == []


CONCURRENT = r"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("files", sys.argv[1])
files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(files)
for _ in range(100):
    files.atomic_write_bytes(sys.argv[2], sys.argv[3].encode() * 100_000)
"""


def test_concurrent_writers_never_break_each_other_or_the_file(tmp_path: Path) -> None:
    # Each writer's cleanup looks at the others' temporary files: a live (locked) one must never be removed.
    target = tmp_path / "stats.json"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, files.__file__, str(target), letter], stderr=subprocess.PIPE, text=True
        )
        for letter in "abcd"
    ]
    errors = [writer.communicate(timeout=120)[1] for writer in writers]
    assert [w.returncode for w in writers] == [0, 0, 0, 0], errors
    content = target.read_bytes()
    assert len(content) == 100_000 and len(set(content)) == 1  # one writer's file, whole
    assert temporaries(tmp_path, "stats.json") == []
