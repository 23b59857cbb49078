"""The black-box gradient check on a Dask cluster: speed-up of 2 workers over 1 process, and the model for 1e7.

In one run, on the same network and parameters (float64 tanh MLP, softmax, batch 64, about 1e5 parameters by default):

- ``preflight.gradcheck`` on ``net.cost`` in this process (one BLAS thread), CPU and wall time;
- the same with ``client=`` a ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``: wall time (the
  work happens in the worker processes), the reports compared number for number;
- the scheduling overhead of one task, measured: 400 tasks of one cheap loss evaluation each, wall time per task
  less the evaluation;
- the model of time against workers for a 1e7-parameter check: (one loss evaluation, measured on a [4096, 2048,
  1024, 10] MLP) x 2P / workers + overhead per task x tasks / workers, with the task size
  ``preflight.check.distributed.task_size`` chooses (overhead under 5 % of a task).

The machine's load average is printed beside: the speed-up of 2 workers needs 2 idle cores.

Run: ``.venv/bin/python benchmarks/bench_distributed.py`` (about 2 minutes on an idle 2-core machine;
``--sizes 64,100,50,10`` for a quick run).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

import preflight
from bench_gradcheck import problem
from preflight._util.text import format_table
from preflight.check.distributed import OVERHEAD_SHARE, DistributedLoss, task_size
from preflight.nn import Network

MODEL_SIZES = [4096, 2048, 1024, 10]


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(run: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def same_numbers(a: Any, b: Any) -> bool:
    x, y = a.to_dict(), b.to_dict()
    x.pop("seconds"), y.pop("seconds")
    return bool(x == y)


def task_overhead(client: Any, count: int = 400) -> float:
    """Wall seconds per task beyond its work, per worker: ``count`` tasks of one coordinate each (a sum of
    ``count`` numbers, a few microseconds), spread over the workers."""
    w = np.ones(count)
    evaluator = DistributedLoss(client, lambda: preflight.check.BlackBoxLoss(np.sum, w, {"w": w}), float(count), 1e9)
    warm = np.zeros(count)
    warm[:8] = 1.0
    evaluator({"w": warm})  # the payload rebuilt on every worker first
    before = evaluator.tasks
    clock = time.perf_counter()
    evaluator({"w": np.ones(count)})  # task_size at 1e9 s per loss is 1: one task per coordinate
    return (time.perf_counter() - clock) * evaluator.workers / (evaluator.tasks - before)


def one_loss_seconds(sizes: list[int]) -> tuple[int, float]:
    net = Network(sizes, hidden="tanh", output="softmax", l2=0.01)
    rng = np.random.default_rng(0)
    params = net.init(rng, scheme="lecun")
    X, y = rng.standard_normal((64, sizes[0])), rng.integers(0, sizes[-1], 64)
    net.cost(params, X, y)
    best = min(timed(lambda: net.cost(params, X, y))[2] for _ in range(5))
    return sum(v.size for v in params.values()), best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256,256,128,10", help="layer widths of the checked network")
    args = parser.parse_args()
    import distributed

    print(_load(), "(start)", flush=True)
    net, params, X, y = problem([int(s) for s in args.sizes.split(",")])
    count = sum(v.size for v in params.values())
    grads = net.gradients(params, X, y)

    def loss(p: dict[str, np.ndarray]) -> float:
        return net.cost(p, X, y)

    with threadpool_limits(limits=1, user_api="blas"):
        local, local_wall, local_cpu = timed(lambda: preflight.gradcheck(loss, params, grads, progress=False))
    print(_load(), "(after the local check)", flush=True)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        before = client.run(time.process_time)
        remote, remote_wall, remote_cpu = timed(
            lambda: preflight.gradcheck(loss, params, grads, progress=False, client=client)
        )
        after = client.run(time.process_time)
        workers_cpu = sum(after[w] - before[w] for w in after)
        print(_load(), "(after the 2-worker check)", flush=True)
        overhead = task_overhead(client)
    rows = [
        ["1 process", f"{count:,}", f"{local_wall:.2f}", f"{local_cpu:.2f}", "1", "ok" if local.passed else "FAIL"],
        [
            "LocalCluster, 2 workers",
            f"{count:,}",
            f"{remote_wall:.2f}",
            f"{remote_cpu:.2f} + {workers_cpu:.2f} (client + workers)",
            f"{local_wall / remote_wall:.2f}x",
            ("ok" if remote.passed else "FAIL") + (", same numbers" if same_numbers(local, remote) else ", DIFFER"),
        ],
    ]
    print()
    print(format_table(["black-box check", "parameters", "wall s", "CPU s", "speed-up (wall)", "verdict"], rows))
    print(
        f"\nCPU of the 2-worker check over the local one: {(remote_cpu + workers_cpu) / local_cpu:.2f} (the work "
        "spread, not added to: on 2 idle cores the wall-time speed-up approaches 2 / this ratio)"
    )
    print(f"\nscheduling overhead per task (measured, 400 one-loss tasks): {overhead * 1e3:.2f} ms")
    big, per_loss = one_loss_seconds(MODEL_SIZES)
    size = task_size(per_loss, big, 1, overhead)
    tasks = 2 * -(-big // size)
    lines = []
    for workers in (1, 2, 8, 32, 128, 512):
        compute = per_loss * 2 * big / workers
        scheduling = overhead * tasks / workers
        lines.append(
            [f"{workers}", f"{compute / 3600:.1f}", f"{scheduling / 3600:.2f}", f"{100 * scheduling / compute:.1f} %"]
        )
    print(
        f"\nModel for {big:,} parameters ({MODEL_SIZES}, batch 64): one loss {per_loss * 1e3:.1f} ms (measured), "
        f"{size} loss evaluations per task (overhead under {OVERHEAD_SHARE:.0%}), {tasks:,} tasks for 2P evaluations"
    )
    print(format_table(["workers", "evaluation hours", "scheduling hours", "overhead"], lines))
    print(f"\n{_load()} (end)")


if __name__ == "__main__":
    main()
