"""Atomic file writes: a crash leaves the old file or the new one, never half of one.

What every write through :func:`atomic_open` promises (docs/guarantees.md):

- a regular file is replaced by a rename: a reader, or a crash at any point, sees the old content or the new;
- a symbolic link is written through: its target is replaced (atomically, in the target's folder), the link stays;
- a device, FIFO or socket, a name of an open descriptor (``/dev/stdout``, ``/dev/fd/N``) and ``"-"`` (standard
  output) are written to directly, never replaced by a regular file;
- a replaced file keeps its permission bits (and its owner and group, where the process may set them); a new file
  gets the mode ``open()`` would give it, 0666 less the umask;
- the temporary file is named ``.NAME.preflight.XXXXXXXX.tmp`` and locked while its writer lives; one left by a
  killed writer is removed by the next successful write to NAME.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, NoReturn

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locks, so stale temporary files are left alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["TEMPORARY_MARK", "atomic_open", "atomic_write_bytes", "atomic_write_text"]

#: Between the target's name and the random part of a temporary file's name: what makes the file recognisably ours.
TEMPORARY_MARK = ".preflight."


@contextmanager
def atomic_open(path: str | Path, *, binary: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success fsync it and rename it over ``path``.

    If the block raises, the temporary file is removed and ``path`` is left as it was. Text is UTF-8 with newlines
    written as given (what the csv module expects). A symlink's target is what gets replaced; a device, FIFO or
    socket, ``/dev/stdout`` and ``"-"`` (standard output; a file named "-" is ``"./-"`` as a str) are written
    directly, without a rename. The replaced file's mode (and owner, where permitted) is kept.

    Raises
    ------
    OSError
        About ``path`` as the caller named it (never about the temporary file); ``IsADirectoryError`` for a folder.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_open(target) as handle:
    ...     _ = handle.write("hi")
    >>> target.read_text()
    'hi'
    """
    if isinstance(path, str) and path == "-":
        with _direct(None, binary=binary) as handle:
            yield handle
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _reraise_about(exc, path)
    kind = _kind(path)
    if kind == "directory":
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if kind == "special" or _names_open_descriptor(path):
        with _direct(path, binary=binary) as handle:
            yield handle
        return
    # Through symlinks to the file they name: the link stays a link, and the rename happens in its target's folder.
    target = Path(os.path.realpath(path))
    with _replacing(target, path, binary=binary) as handle:
        yield handle


@contextmanager
def _replacing(target: Path, named: Path, *, binary: bool) -> Iterator[IO[Any]]:
    """The atomic write proper: a locked temporary file beside ``target``, renamed over it on success."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)  # a dangling symlink's folder
        existing = os.stat(target) if target.exists() else None
        fd, tmp = _temporary(target)
    except OSError as exc:
        _reraise_about(exc, named)
    replaced = False
    try:
        _copy_ownership(tmp, existing)
        handle = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            try:
                os.replace(tmp, target)
            except OSError as exc:
                _reraise_about(exc, named)
            replaced = True  # the lock goes with the handle's close, after the rename
        _sync_folder(target.parent)
        _remove_stale(target)
    finally:
        if not replaced:
            Path(tmp).unlink(missing_ok=True)


def _kind(path: Path) -> str:
    """What ``path`` names, following symlinks: "absent", "file", "directory" or "special" (device, FIFO, ...)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "absent"  # or a dangling symlink, whose target will be created
    except OSError as exc:  # a symlink loop, a path through a file, no permission
        _reraise_about(exc, path)
    if stat.S_ISDIR(mode):
        return "directory"
    return "file" if stat.S_ISREG(mode) else "special"


def _names_open_descriptor(path: Path) -> bool:
    """Whether ``path`` leads through symlinks to /proc/PID/fd/N (``/dev/stdout``, ``/dev/fd/1`` on Linux).

    Such a name is an open file of some process: when it is a regular file (``> out.json`` in the shell), a rename
    would swap the file under the process holding it and lose what it appended; it is written directly instead.
    """
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on symlinks followed in one lookup
        folder = os.path.realpath(os.path.dirname(current))
        if re.fullmatch(r"/proc/[^/]+/fd", folder):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.normpath(os.path.join(folder, os.readlink(current)))
    return False


@contextmanager
def _direct(path: Path | None, *, binary: bool) -> Iterator[IO[Any]]:
    """Write to a device, FIFO, socket or open descriptor (``path``), or to standard output (None), as it is."""
    if path is None:
        if sys.stdout is not None:
            sys.stdout.flush()  # what was printed before comes first
        fd = os.dup(1)
    else:
        # No O_TRUNC and no O_CREAT: a device has nothing to truncate, and an open descriptor that is a regular
        # file is appended to, as the shell opened it (``>`` truncated it already; ``>>`` asked to append).
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            _reraise_about(exc, path)
    handle = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8")
    with handle:
        yield handle


def _temporary(target: Path) -> tuple[int, str]:
    """A new temporary file beside ``target``, locked for as long as it is open (so nobody takes it for stale)."""
    for _ in range(100):
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}{TEMPORARY_MARK}", suffix=".tmp")
        if fcntl is None:
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _still_named(fd, tmp):
                return fd, tmp
        except OSError:
            pass  # another writer's cleanup took it for stale between mkstemp and the lock: it removes it
        os.close(fd)
    raise OSError(errno.EAGAIN, "could not create a temporary file", str(target))  # pragma: no cover


def _still_named(fd: int, path: str) -> bool:
    """Whether ``path`` still names the open file ``fd`` (not removed, not replaced)."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _copy_ownership(tmp: str, existing: os.stat_result | None) -> None:
    """Give the temporary file the mode of the file it replaces (owner and group where allowed), else open()'s."""
    if existing is None:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        return
    if hasattr(os, "chown") and (existing.st_uid, existing.st_gid) != (os.getuid(), os.getgid()):
        try:
            os.chown(tmp, existing.st_uid, existing.st_gid)
        except PermissionError:
            with suppress(PermissionError):
                os.chown(tmp, -1, existing.st_gid)  # a group the user belongs to, at least
    os.chmod(tmp, stat.S_IMODE(existing.st_mode))  # after chown, which may clear set-id bits


def _sync_folder(folder: Path) -> None:
    """fsync the folder, so that the rename itself survives a power cut (where the system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale(target: Path) -> None:
    """Remove temporary files for ``target`` that no live writer holds (their writer was killed mid-write)."""
    if fcntl is None:
        return
    ours = re.compile(re.escape(f".{target.name}{TEMPORARY_MARK}") + r"[A-Za-z0-9_]+\.tmp")
    try:
        entries = [entry.path for entry in os.scandir(target.parent) if ours.fullmatch(entry.name)]
    except OSError:
        return
    for candidate in entries:
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while its writer lives
                if _still_named(fd, candidate):
                    os.unlink(candidate)
        except OSError:
            pass
        finally:
            os.close(fd)


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
