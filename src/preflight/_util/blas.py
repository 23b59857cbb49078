"""One BLAS thread for preflight's many small matrix products.

Measured on the project's 2-core machine (OpenBLAS): ``preflight experiment depth`` took 25 s with one BLAS thread
and 48 s with two while one other process kept a core busy; a (2048 x 128) @ (128 x 10) product took 0.3 ms on one
thread and 12 ms on two, because waking the second thread waits for the scheduler. With nothing else running the two
are even, so one thread costs nothing and protects against the common case of a shared machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["THREAD_VARIABLES", "one_blas_thread"]

#: Environment variables by which a user chooses BLAS threads themselves; when one is set it is respected.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


@contextmanager
def one_blas_thread(*, respect_environment: bool = False) -> Iterator[None]:
    """Limit BLAS to one thread inside the block (with threadpoolctl, when installed; otherwise a no-op).

    Parameters
    ----------
    respect_environment : bool
        Leave BLAS alone when the user set one of ``THREAD_VARIABLES`` (the command line does this).

    Examples
    --------
    >>> import numpy as np
    >>> with one_blas_thread():
    ...     float((np.ones((2, 3)) @ np.ones(3)).sum())
    6.0
    """
    chosen = respect_environment and any(os.environ.get(name) for name in THREAD_VARIABLES)
    limits = None if chosen else _threadpool_limits()
    if limits is None:  # the user's own setting, or no threadpoolctl (optional, the data extra)
        yield
        return
    with limits(limits=1, user_api="blas"):
        yield


def _threadpool_limits() -> Any:
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        return None
    return threadpool_limits
