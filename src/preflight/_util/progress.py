"""Progress bars for long checks: when to show one, and the bar itself (tqdm, the ``progress`` extra, if installed)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["PROGRESS_AFTER_S", "progress_bar", "should_show_progress", "stderr_is_terminal"]

#: Show a progress bar when the check is expected to take longer than this (seconds).
PROGRESS_AFTER_S = 2.0


def should_show_progress(progress: bool | None, expected_seconds: float) -> bool:
    """The progress rule of every check: as asked, or by default when the check should take more than
    ``PROGRESS_AFTER_S`` seconds and stderr is a terminal (a bar in a CI log or a pipe is noise).

    Examples
    --------
    >>> should_show_progress(True, 0.1), should_show_progress(None, 0.1)
    (True, False)
    """
    if progress is not None:
        return bool(progress)
    return expected_seconds > PROGRESS_AFTER_S and stderr_is_terminal()


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal: False also when there is none (closed at start: None) or it was closed."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (ValueError, OSError):  # "I/O operation on closed file"
        return False


@contextmanager
def progress_bar(total: int, enabled: bool, *, desc: str) -> Iterator[Callable[[int], None] | None]:
    """A tqdm bar of ``total`` loss evaluations, yielding its ``update`` (None when disabled or tqdm is missing).

    Examples
    --------
    >>> with progress_bar(10, False, desc="demo") as tick:
    ...     tick is None
    True
    """
    if not enabled:
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield None
        return
    bar = tqdm(total=total, desc=desc, unit="eval", leave=False)
    try:
        yield bar.update
    finally:
        bar.close()
