"""BLAS threads for preflight's own work: one, unless the user chose.

preflight's matrices are small (a layer of a few hundred units, a batch of a few hundred rows), where a second BLAS
thread only adds synchronisation, and on a shared machine waiting for it costs far more than the product. Measured
on the project's 2-core machine (OpenBLAS, another process keeping one core busy): ``Network.fit`` for 200
iterations took 10.6 s with the default threads and 2.0 s with one; ``preflight experiment depth`` 48 s against
25 s; a (2048 x 128) @ (128 x 10) product 12 ms against 0.3 ms. With nothing else running the two are even, so one
thread costs nothing and protects against the common case. ``benchmarks/bench_blas.py`` measures it side by side.

The policy, for library calls and commands alike: preflight's heavier entry points (``Network.fit``,
``propagation.analyze``, ``gradcheck``, ``nn.gradcheck``, ``lsuv``, the experiments, the tour, every command) run
BLAS on one thread for their duration and restore it after, so the caller's own NumPy work keeps its threads. A user
who sets one of :data:`THREAD_VARIABLES` (``OMP_NUM_THREADS=4``, ...) has chosen: BLAS is then left alone. Without
threadpoolctl (extra ``data``) nothing is changed.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

__all__ = ["THREAD_VARIABLES", "limit_blas_threads", "one_blas_thread", "user_chose_threads"]

#: Environment variables by which a user chooses BLAS threads themselves; when one is set it is respected.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")

P = ParamSpec("P")
R = TypeVar("R")

_state = threading.local()
_controller: list[Any] = []  # threadpoolctl's controller, found once: entering a limit then costs ~8 us, not 0.5 ms


def user_chose_threads() -> bool:
    """Whether one of :data:`THREAD_VARIABLES` is set (to anything but the empty string).

    Examples
    --------
    >>> isinstance(user_chose_threads(), bool)
    True
    """
    return any(os.environ.get(name) for name in THREAD_VARIABLES)


def _blas_controller() -> Any:
    if not _controller:
        try:
            from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]
        except ImportError:
            _controller.append(None)
        else:
            _controller.append(ThreadpoolController())
    return _controller[0]


@contextmanager
def one_blas_thread(*, respect_environment: bool = True) -> Iterator[None]:
    """Limit BLAS to one thread inside the block (with threadpoolctl, when installed; otherwise a no-op).

    Nested blocks cost nothing: only the outermost one changes and restores the limit.

    Parameters
    ----------
    respect_environment : bool
        Leave BLAS alone when the user set one of :data:`THREAD_VARIABLES`.

    Examples
    --------
    >>> import numpy as np
    >>> with one_blas_thread():
    ...     float((np.ones((2, 3)) @ np.ones(3)).sum())
    6.0
    """
    depth = getattr(_state, "depth", 0)
    # A variable set to 1 asks for what this block does: Dask's LocalCluster sets OMP_NUM_THREADS=1 and its kin in
    # the client's own environment (for its workers), long after BLAS started with its threads; left alone, BLAS
    # would then run multithreaded here and round norms differently from the workers and from a check without Dask.
    chosen = respect_environment and any(os.environ.get(name) not in (None, "", "1") for name in THREAD_VARIABLES)
    controller = None if depth or chosen else _blas_controller()
    if controller is None:
        yield
        return
    _state.depth = depth + 1
    try:
        with controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        _state.depth = depth


def limit_blas_threads(function: Callable[P, R]) -> Callable[P, R]:
    """Decorator: ``function`` runs inside :func:`one_blas_thread` (the user's environment variables respected).

    Examples
    --------
    >>> @limit_blas_threads
    ... def total(n: int) -> float:
    ...     return float(sum(range(n)))
    >>> total(4)
    6.0
    """

    @functools.wraps(function)
    def limited(*args: P.args, **kwargs: P.kwargs) -> R:
        with one_blas_thread():
            return function(*args, **kwargs)

    return limited
