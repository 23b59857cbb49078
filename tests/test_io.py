"""Atomic writes: the old file or the new one, never half of one, and errors about the file the caller named."""

from __future__ import annotations

from pathlib import Path

import pytest

from preflight._util.files import atomic_open, atomic_write_text


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
