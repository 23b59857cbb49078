"""Perturbed losses on a Dask cluster: the coordinates of each tensor split into ranges, one task per range.

Coordinates are independent, so a full check shards. The check itself stays on the caller's side (the loss is
evaluated there twice, its rounding noise measured there once, the verdict taken there); only the perturbed losses
go out. The evaluator (the black box over the loss and a copy of the parameters, or a structure-aware one) is
serialized with cloudpickle once, broadcast to every worker once, and rebuilt there once per worker; each task then
carries only its coordinate range and its offsets. At most :data:`TASKS_IN_FLIGHT` tasks per worker are out at a
time and their results are written into the one cost array as they come back, so no second P-sized copy of the
offsets or of the costs exists.

A task's cost is fixed by the scheduler (:data:`TASK_OVERHEAD` per task, measured in
``benchmarks/bench_distributed.py``), so a task holds enough coordinates that this overhead stays under
:data:`OVERHEAD_SHARE` of its work.
"""

from __future__ import annotations

import math
import pickle
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.blas import one_blas_thread
from preflight._util.heap import roomy_heap
from preflight._util.optional import require
from preflight._util.shared_state import SharedSetting
from preflight._util.validation import describe
from preflight.check.inputs import parameter_leaves
from preflight.check.perturb import BlackBoxLoss, PerturbedLoss

__all__ = [
    "OVERHEAD_SHARE",
    "TASKS_IN_FLIGHT",
    "TASK_OVERHEAD",
    "BlackBoxBuilder",
    "DistributedLoss",
    "check_client",
    "distributed_loss",
    "profiler_paused",
    "task_size",
]

F64 = NDArray[np.float64]
#: Scheduling cost of one Dask task, seconds: on a LocalCluster (submit, ship the range, run, gather; the scheduler
#: shares the client's process) ``benchmarks/bench_distributed.py`` measured 9.9 ms on an idle 2-core machine and
#: 14 ms under load, of which about 7.7 ms is CPU in the client's process, taken from the workers' cores when they
#: share a machine. An upper estimate: a longer task only costs balance at the end.
TASK_OVERHEAD = 1e-2
#: The share of a task's time the scheduling overhead may take.
OVERHEAD_SHARE = 0.05
#: Tasks out per worker at a time: two keeps each worker busy while a result travels back.
TASKS_IN_FLIGHT = 2

_WORKER_EVALUATORS: dict[tuple[str, str], PerturbedLoss] = {}
_PROFILER = SharedSetting()  # paused while any preflight task runs in this worker process


def check_client(client: Any) -> Any:
    """``client`` if it is a ``dask.distributed.Client``, else ValueError naming the argument.

    Examples
    --------
    >>> try:
    ...     check_client("tcp://127.0.0.1:8786")
    ... except ValueError as error:
    ...     print(str(error).split(";")[0])
    client: expected a dask.distributed.Client, got 'tcp://127.0.0.1:8786'
    """
    distributed = require("distributed", extra="dask", purpose="gradcheck(client=...)")
    if not isinstance(client, distributed.Client):
        raise ValueError(
            f"client: expected a dask.distributed.Client, got {describe(client)}; connect first: "
            "client = distributed.Client(address)"
        )
    if client.status != "running":
        raise ValueError(f"client: expected a running dask.distributed.Client, got one with status {client.status!r}")
    return client


def task_size(seconds_per_loss: float, coordinates: int, workers: int, overhead: float = TASK_OVERHEAD) -> int:
    """Perturbed losses per task: enough that ``overhead`` (seconds per task) stays under :data:`OVERHEAD_SHARE` of
    the task, but no more than an even share per worker (a tensor smaller than that still uses every worker).

    Examples
    --------
    >>> task_size(250e-6, 10**7, 2), task_size(250e-6, 500, 2)
    (800, 250)
    """
    enough = math.ceil(overhead / (OVERHEAD_SHARE * max(seconds_per_loss, 1e-9)))
    share = math.ceil(coordinates / max(workers, 1))
    return max(1, min(enough, share))


class BlackBoxBuilder:
    """What a worker needs to rebuild the black box: the loss, the parameters (a copy of its own) and f0."""

    def __init__(self, loss: Callable[[Any], Any], params: Any, unperturbed: float) -> None:
        self.loss, self.params, self.unperturbed = loss, params, unperturbed

    def __call__(self) -> PerturbedLoss:
        box = BlackBoxLoss(self.loss, self.params, parameter_leaves(self.params))
        box.unperturbed = self.unperturbed
        return box


def distributed_loss(
    client: Any, evaluator: PerturbedLoss | None, loss: Callable[[Any], Any], params: Any, f0: float, f0_time: float
) -> DistributedLoss:
    """The engine's evaluator on ``client``: the black box over ``loss`` and ``params``, or ``evaluator``, shipped.

    The task size comes from the cost of one perturbed loss: ``f0_time`` for the black box, timed on a few
    coordinates for a structure-aware evaluator (far cheaper than a whole loss call).
    """
    if evaluator is None:
        return DistributedLoss(client, BlackBoxBuilder(loss, params, f0), f0, f0_time)
    shipped = evaluator
    seconds = _seconds_per_loss(evaluator, parameter_leaves(params))
    return DistributedLoss(client, lambda: shipped, f0, seconds, origin=evaluator)


def _seconds_per_loss(evaluator: PerturbedLoss, leaves: dict[str, NDArray[Any]]) -> float:
    """One perturbed loss on ``evaluator``, timed on the largest tensor's first coordinates (doubling up to 0.05 s)."""
    name = max(leaves, key=lambda n: leaves[n].size)
    arr, count = leaves[name], 8
    while True:
        offset = np.zeros(arr.shape, dtype=arr.dtype)
        offset.reshape(-1)[:count] = np.cbrt(np.finfo(arr.dtype).eps)
        clock = time.perf_counter()
        evaluator({name: offset})
        elapsed = time.perf_counter() - clock
        if elapsed > 0.05 or count >= arr.size:
            return elapsed / min(count, arr.size)
        count *= 4


@contextmanager
def profiler_paused(worker: Any) -> Iterator[None]:
    """The worker's statistical profiler paused while the block runs (restarted when the last such block ends).

    Dask samples the stack of every thread running a task each 10 ms (``distributed.worker.profile.interval``),
    holding the GIL while it walks the frames; measured on the project's 2-core machine, a loss evaluation of the
    1e5-parameter MLP in a worker cost 0.499 ms with it against 0.475 ms without (0.456 ms outside Dask). The
    perturbed losses are thousands of identical calls, with nothing for a profile to show; other tasks are
    profiled as before. A worker without the profiler (disabled in its configuration) is left as it is.
    """
    callback = getattr(worker, "periodic_callbacks", {}).get("profile")
    if callback is None:
        yield
        return
    loop = worker.loop  # its own thread stops and restarts the callback: add_callback is thread-safe
    with _PROFILER.held(lambda: loop.add_callback(callback.stop), lambda: loop.add_callback(callback.start)):
        yield


def _evaluate_range(
    payload: Any, token: str, name: str, shape: tuple[int, ...], index: Any, values: Any
) -> tuple[F64, Any]:
    """On a worker: the perturbed losses of ``name`` at the flat positions ``index`` moved by ``values``, and what
    the worker's copy of the evaluator learned that the caller's report needs (its ``worker_state()``, if it has
    one: a structure-aware evaluator that fell back to plain model calls says so)."""
    from distributed import get_worker

    worker = get_worker()
    key = (token, worker.address)
    if key not in _WORKER_EVALUATORS:
        _WORKER_EVALUATORS[key] = pickle.loads(payload)()  # cloudpickle's output loads with pickle
    evaluator = _WORKER_EVALUATORS[key]
    # Dask's workers hand every freed temporary back to the system (see preflight._util.heap): 2.4x the cost of a
    # loss evaluation; the task runs with glibc's own limits and the worker trims once after it.
    with one_blas_thread(), roomy_heap(), profiler_paused(worker):
        if hasattr(evaluator, "range_losses"):  # the black box and the torch evaluators: no tensor-sized scan
            out: F64 = np.asarray(evaluator.range_losses(name, index, values), dtype=np.float64)
        else:
            offset = np.zeros(int(np.prod(shape)), dtype=np.asarray(values).dtype)
            offset[index] = values
            costs = evaluator({name: offset.reshape(shape)})[name]
            out = np.asarray(costs, dtype=np.float64).reshape(-1)[index]
    return out, evaluator.worker_state() if hasattr(evaluator, "worker_state") else None


class DistributedLoss:
    """A :class:`PerturbedLoss` whose perturbed losses are computed on a Dask cluster.

    Parameters
    ----------
    client : dask.distributed.Client
    build : callable
        ``build() -> PerturbedLoss``, called once on each worker (cloudpickled once, broadcast once).
    unperturbed : float
        The loss at the given parameters: the value of entries whose offset is 0.
    seconds_per_loss : float
        One perturbed loss's cost, for the task size (:func:`task_size`).
    origin : PerturbedLoss, optional
        The caller's own evaluator: a worker's ``worker_state()`` that is not None goes to its
        ``merge_worker_state`` (so a fallback on a worker reaches the report's notes).
    """

    def __init__(
        self,
        client: Any,
        build: Callable[[], PerturbedLoss],
        unperturbed: float,
        seconds_per_loss: float,
        origin: Any = None,
    ):
        import cloudpickle  # type: ignore[import-untyped]

        self.client, self.unperturbed, self.seconds_per_loss = check_client(client), unperturbed, seconds_per_loss
        self.origin = origin
        self.workers = max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))
        self.token = uuid.uuid4().hex
        blob = cloudpickle.dumps(build, protocol=pickle.HIGHEST_PROTOCOL)
        self.payload = self.client.scatter(blob, broadcast=True, hash=False)
        self.tasks = 0

    def __call__(self, offsets: Mapping[str, NDArray[Any]], /) -> dict[str, F64]:
        from distributed import as_completed

        out: dict[str, F64] = {}
        pending = self._tasks(offsets, out)
        # with_results: each result is gathered by the client's event loop as its task ends, not by a blocking
        # round trip per future from this thread.
        window = as_completed(with_results=True)  # type: ignore[no-untyped-call]
        where: dict[str, tuple[F64, NDArray[np.intp]]] = {}
        for _ in range(TASKS_IN_FLIGHT * self.workers):
            self._submit(pending, window, where)
        for future, (values, state) in window:
            costs, index = where.pop(future.key)
            costs[index] = values
            if state is not None and hasattr(self.origin, "merge_worker_state"):
                self.origin.merge_worker_state(state)
            self._submit(pending, window, where)
        return out

    def _tasks(self, offsets: Mapping[str, NDArray[Any]], out: dict[str, F64]) -> Iterator[tuple[Any, ...]]:
        """Lazily, one (name, shape, index, values, costs) per range: the offsets are sliced only when sent."""
        for name, offset in offsets.items():
            flat = np.asarray(offset).reshape(-1)
            costs = np.full(flat.size, self.unperturbed, dtype=np.float64)
            out[name] = costs.reshape(np.shape(offset))
            index = np.flatnonzero(flat)
            size = task_size(self.seconds_per_loss, index.size, self.workers)
            for start in range(0, index.size, size):
                part = index[start : start + size]
                yield name, np.shape(offset), part, flat[part], costs

    def _submit(self, pending: Iterator[tuple[Any, ...]], window: Any, where: dict[str, Any]) -> None:
        task = next(pending, None)
        if task is None:
            return
        name, shape, index, values, costs = task
        future = self.client.submit(_evaluate_range, self.payload, self.token, name, shape, index, values, pure=False)
        where[future.key] = (costs, index)
        window.add(future)
        self.tasks += 1
