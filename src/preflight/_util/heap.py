"""The C heap while preflight evaluates losses in a process told to hand memory back at once (Dask's workers).

Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``), so
that freed memory goes back to the operating system. Setting that variable also switches off glibc's dynamic mmap
threshold: every temporary above 128 KiB is then mapped fresh, page-faulted in and unmapped again, and the top of the
heap is trimmed after each free. A loss of a batch-64 MLP makes a dozen such temporaries per call; measured on the
project's 2-core machine, one ``net.cost`` of the 1e5-parameter MLP took 1.11 ms with the variable set against
0.46 ms without (``benchmarks/bench_distributed.py`` prints the worker's cost per loss beside the local one).

:func:`roomy_heap` gives the allocator, for the duration of a block, the limits glibc would have reached by itself
(mmap threshold up to its own 32 MiB cap, trim threshold twice that), then puts the environment's limits back and
trims once, so the worker still returns its memory after the task. It does nothing where the allocator was not
configured through the environment, or where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from preflight._util.shared_state import SharedSetting

__all__ = ["ALLOCATOR_VARIABLES", "SETTLING_BLOCK", "roomy_heap", "settle_heap"]

#: Environment variables by which glibc's allocator is configured; setting any of them freezes its mmap threshold.
ALLOCATOR_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")

# mallopt's parameter numbers (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: glibc's own ceiling for its dynamic mmap threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX, 4 MiB x 8).
ROOMY_MMAP_THRESHOLD = 32 << 20
#: glibc keeps its trim threshold at twice the dynamic mmap threshold; the same here.
ROOMY_TRIM_THRESHOLD = 2 * ROOMY_MMAP_THRESHOLD
#: glibc's defaults, restored for a variable the environment does not set.
_DEFAULT_THRESHOLD = 128 << 10

_SETTING = SharedSetting()
_libc: list[Any] = []


def _glibc() -> Any:
    """The C library when it is glibc with ``mallopt`` and ``malloc_trim``, else None (found once)."""
    if not _libc:
        library = None
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                candidate = ctypes.CDLL("libc.so.6")
            except OSError:
                candidate = None
            if candidate is not None and hasattr(candidate, "mallopt") and hasattr(candidate, "malloc_trim"):
                library = candidate
        _libc.append(library)
    return _libc[0]


def _environment_threshold(name: str) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip().isdigit() else _DEFAULT_THRESHOLD


@contextmanager
def roomy_heap() -> Iterator[None]:
    """Inside the block, the allocator keeps temporaries below 32 MiB on its heap (see the module's docstring).

    Nested and concurrent blocks (threads of one worker) share one setting: the first in sets it, the last out
    restores the environment's limits and trims the heap once.

    Examples
    --------
    >>> import numpy as np
    >>> with roomy_heap():
    ...     float(np.ones((300, 300)).sum())
    90000.0
    """
    libc = _glibc() if any(os.environ.get(name) for name in ALLOCATOR_VARIABLES) else None
    if libc is None:
        yield
        return

    def enter() -> None:
        libc.mallopt(_M_MMAP_THRESHOLD, ROOMY_MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, ROOMY_TRIM_THRESHOLD)

    def leave() -> None:
        libc.mallopt(_M_MMAP_THRESHOLD, _environment_threshold("MALLOC_MMAP_THRESHOLD_"))
        libc.mallopt(_M_TRIM_THRESHOLD, _environment_threshold("MALLOC_TRIM_THRESHOLD_"))
        libc.malloc_trim(0)

    with _SETTING.held(enter, leave):
        yield


#: The block :func:`settle_heap` maps and frees: just under glibc's 32 MiB ceiling for its dynamic mmap threshold.
SETTLING_BLOCK = 30 << 20
_settled: list[bool] = []


def settle_heap() -> None:
    """Once per process: map and free one 30 MiB block, so glibc's dynamic limits rise as they would by themselves.

    glibc raises its mmap threshold to the largest mapped block freed so far (up to 32 MiB) and its trim threshold to
    twice that. A process that has freed nothing large keeps the 128 KiB defaults, and a check whose batched
    temporaries are a few MiB then trims the top of its heap after almost every batch and faults the pages in again:
    ``nn.gradcheck`` at 1e6 parameters spent 12.3 of its 24.7 s of CPU in the kernel (5.9 million page faults),
    11.2 s in all after this call (``benchmarks/bench_gradcheck_million.py``). The cost to the process: up to 60 MiB
    freed at the top of its heap may stay there instead of going back to the system. Nothing is done where the
    environment configures the allocator (its limits are then fixed; :func:`roomy_heap` is for that case) or where
    the C library is not glibc.

    Examples
    --------
    >>> settle_heap()
    """
    if _settled or any(os.environ.get(name) for name in ALLOCATOR_VARIABLES):
        return
    _settled.append(True)
    if _glibc() is not None:
        import numpy as np

        block = np.empty(SETTLING_BLOCK, dtype=np.uint8)  # mapped (above the threshold), never touched
        del block
