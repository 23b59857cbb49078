"""Atomic file writes: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NoReturn

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text"]


@contextmanager
def atomic_open(path: str | Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success fsync it and rename it over ``path``.

    If the block raises, the temporary file is removed and ``path`` is left as it was. Text is UTF-8 with newlines
    written as given (what the csv module expects).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_open(target) as handle:
    ...     _ = handle.write("hi")
    >>> target.read_text()
    'hi'
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        _reraise_about(exc, path)
    try:
        # mkstemp creates the file 0600; give it the permissions an ordinary open() would (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        handle = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.replace(tmp, path)
        except OSError as exc:
            _reraise_about(exc, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _reraise_about(exc: OSError, path: Path) -> NoReturn:
    """Raise the error about ``path`` (chained to the original), or the original itself when it has no errno."""
    restated = _about(exc, path)
    if restated is exc:
        raise exc
    raise restated from exc


def _about(exc: OSError, path: Path) -> OSError:
    """The same error, about the file the caller named rather than our temporary file beside it."""
    if exc.errno is None or exc.strerror is None:
        return exc  # no errno to restate (a message of its own): keep it as it is
    return type(exc)(exc.errno, exc.strerror, str(path))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> atomic_write_bytes(target, b"hi").read_bytes()
    b'hi'
    """
    with atomic_open(path, binary=True) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))
