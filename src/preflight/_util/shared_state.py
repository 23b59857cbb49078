"""A process-wide setting held while any of several blocks runs (nested, or in other threads of the process)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SharedSetting"]


class SharedSetting:
    """``enter()`` when the first holder comes in, ``leave()`` when the last one goes out.

    Examples
    --------
    >>> calls = []
    >>> shared = SharedSetting()
    >>> with shared.held(lambda: calls.append("on"), lambda: calls.append("off")):
    ...     with shared.held(lambda: calls.append("on"), lambda: calls.append("off")):
    ...         pass
    >>> calls
    ['on', 'off']
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0

    @contextmanager
    def held(self, enter: Callable[[], Any], leave: Callable[[], Any]) -> Iterator[None]:
        with self._lock:
            self._holders += 1
            if self._holders == 1:
                enter()
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    leave()
