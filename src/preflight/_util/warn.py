"""Warnings that point at the caller's line, however deep inside preflight they are raised.

A fixed ``stacklevel`` is right for one call path only: ``Standardizer.fit`` reaches the constant-feature warning
one frame deeper than ``partial_fit`` does, and a callback's warning comes from inside ``Network.fit``. Walking out
of the package's own files finds the user's frame on every path (what ``skip_file_prefixes`` does from Python 3.12).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

__all__ = ["PreflightWarning", "warn"]


class PreflightWarning(UserWarning):
    """Base of every warning preflight issues (a numerical doubt: a constant feature, a vanishing layer, ...).

    ``warnings.filterwarnings("ignore", category=PreflightWarning)`` silences them all; the test suite turns one
    that leaks out of a test into an error (pyproject.toml), so each test that provokes one says so.
    """


_PACKAGE = str(Path(__file__).resolve().parent.parent)  # the preflight package, not this folder


def warn(message: str, category: type[Warning] = PreflightWarning, *, skip: tuple[str, ...] = ()) -> None:
    """Issue ``warnings.warn(message, category)`` attributed to the first frame outside preflight (and outside the
    folders in ``skip``: a hook that torch calls is reached through torch's own frames).

    ``category`` should be :class:`PreflightWarning` or a subclass: that is how the test suite tells preflight's
    warnings from other libraries'.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn("careful", RuntimeWarning)
    >>> caught[0].filename.startswith(_PACKAGE)
    False
    """
    frame = sys._getframe(1)
    level = 2  # 1 is this function, 2 the caller of warn()
    inside = (_PACKAGE, *skip)
    while frame.f_back is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(inside):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
