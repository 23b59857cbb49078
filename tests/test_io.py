"""Atomic writes: the old file or the new one, never half of one, and errors about the file the caller named."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from preflight._util.files import TEMPORARY_MARK, atomic_open, atomic_write_text


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.txt"]


def test_an_error_names_the_target_not_the_temporary_file(tmp_path: Path) -> None:
    # The temporary file beside the target is ours; a message naming ".report.html.x1y2.tmp" confuses.
    (tmp_path / "report.html").mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        atomic_write_text(tmp_path / "report.html", "x")
    assert caught.value.filename == str(tmp_path / "report.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OSError) as caught:
        atomic_write_text(blocker / "inside.txt", "x")
    assert str(blocker) in str(caught.value.filename)


# ---------------------------------------------------------------------- what a write keeps (issue #13, items 2-4)
# Only on links, FIFOs and files made here in tmp_path: never the system's /dev nodes.
def test_a_symlink_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    elsewhere = tmp_path / "data"
    elsewhere.mkdir()
    real = elsewhere / "stats.json"
    real.write_text("old")
    link = tmp_path / "stats.json"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["stats.json"]  # the temporary file went in its folder


def test_a_dangling_symlink_gets_its_target_created(tmp_path: Path) -> None:
    link = tmp_path / "out.json"
    link.symlink_to(tmp_path / "sub" / "real.json")
    atomic_write_text(link, "new")
    assert link.is_symlink() and (tmp_path / "sub" / "real.json").read_text() == "new"


def test_a_fifo_is_written_to_not_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader first, so that the writer's open does not wait
    try:
        atomic_write_text(fifo, "through the pipe")
        received = os.read(reader, 1024)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced by a regular file"
    assert received == b"through the pipe"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="Linux /proc")
def test_a_name_of_an_open_descriptor_is_appended_to_not_renamed_over(tmp_path: Path) -> None:
    # What /dev/stdout is under `>> log`: a link to /proc/self/fd/N, an open file. A rename would swap the file
    # under the process holding it and lose what was there.
    log = tmp_path / "log.txt"
    log.write_text("earlier lines\n")
    inode = os.stat(log).st_ino
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        link = tmp_path / "stdout"
        link.symlink_to(f"/proc/self/fd/{fd}")
        atomic_write_text(link, "the statistics\n")
    finally:
        os.close(fd)
    assert log.read_text() == "earlier lines\nthe statistics\n" and os.stat(log).st_ino == inode
    assert link.is_symlink()


def test_dash_is_standard_output(capfd: pytest.CaptureFixture[str]) -> None:
    atomic_write_text("-", "to stdout\n")
    assert capfd.readouterr().out == "to stdout\n"


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755])
def test_a_replaced_file_keeps_its_mode(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "private.json"
    target.write_text("old")
    target.chmod(mode)
    atomic_write_text(target, "new")
    assert stat.S_IMODE(os.stat(target).st_mode) == mode and target.read_text() == "new"


def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "new.json", "x")
        (tmp_path / "opened.json").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.json").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "opened.json").st_mode) == 0o640


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root may give a file away")
def test_a_replaced_file_keeps_its_owner_where_permitted(tmp_path: Path) -> None:
    target = tmp_path / "theirs.json"
    target.write_text("old")
    os.chown(target, 12345, 23456)
    atomic_write_text(target, "new")
    info = os.stat(target)
    assert (info.st_uid, info.st_gid) == (12345, 23456)


def test_a_stale_temporary_file_is_removed_by_the_next_write_and_a_live_one_kept(tmp_path: Path) -> None:
    target = tmp_path / "stats.json"
    stale = tmp_path / f".stats.json{TEMPORARY_MARK}dead0001.tmp"
    stale.write_text("half of a write whose process was killed")
    live = tmp_path / f".stats.json{TEMPORARY_MARK}live0001.tmp"
    live.write_text("a write in progress")
    other = tmp_path / f".other.json{TEMPORARY_MARK}dead0002.tmp"  # another file's: not ours to judge here
    other.write_text("x")
    with live.open("rb") as holder:
        fcntl = pytest.importorskip("fcntl")
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)  # what a live writer holds
        atomic_write_text(target, "new")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["stats.json", live.name, other.name])


def test_a_folder_or_an_empty_name_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty name was Path("") == Path("."): "Device or resource busy: ." from the rename.
    monkeypatch.chdir(tmp_path)
    for path in ("", str(tmp_path)):
        with pytest.raises(IsADirectoryError) as caught:
            atomic_write_text(path, "x")
        assert caught.value.filename in (".", str(tmp_path))
    assert list(tmp_path.iterdir()) == []
