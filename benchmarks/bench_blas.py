"""preflight's BLAS policy for library calls, side by side: one BLAS thread (the default) vs BLAS left alone.

Each library call runs twice per round, in alternating order: once as preflight runs it (BLAS limited to one thread
for the call's duration, see ``preflight._util.blas``), once with ``OMP_NUM_THREADS`` set, which tells preflight
the user has chosen and leaves BLAS at its default threads (set after start-up, the variable does not change the
thread count NumPy's BLAS already has: only the policy sees it). Best of ``--repeat`` rounds. The table also prints
the load average before and after: on a machine other processes share, the ratio is what to read.

Run: ``.venv/bin/python benchmarks/bench_blas.py`` (about a minute) or ``--quick``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from preflight import data, gradcheck, nn, propagation
from preflight._util.text import format_table


def workloads(quick: bool) -> dict[str, Callable[[], Any]]:
    X, y = data.digits()
    X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    net = nn.Network([64, 100, 50, 10], hidden="tanh", output="softmax", l2=1e-3)
    params = net.init(0, "lecun")
    iterations = 50 if quick else 200
    deep = nn.Network([256] * (11 if quick else 21) + [10], hidden="relu", output="softmax")
    deep_params = deep.init(0, "he")
    rng = np.random.default_rng(0)
    Xd, yd = rng.standard_normal((256, 256)), rng.integers(0, 10, 256)
    small = nn.Network([20, 30, 20, 3], hidden="tanh", output="softmax")
    small_params = small.init(0, "lecun")
    Xs, ys = rng.standard_normal((64, 20)), rng.integers(0, 3, 64)

    def black_box() -> Any:
        return gradcheck(lambda p: small.cost(p, Xs, ys), small_params, lambda p: small.gradients(p, Xs, ys))

    return {
        f"Network.fit, [64, 100, 50, 10] on digits, {iterations} iterations": lambda: net.fit(
            params, X, y, learning_rate=0.1, iterations=iterations
        ),
        f"propagation.analyze, {deep.depth} ReLU layers of 256, batch 256": lambda: propagation.analyze(
            deep, deep_params, Xd, yd, warn=False
        ),
        "nn.gradcheck, [64, 100, 50, 10], batch 64": lambda: nn.gradcheck(net, params, X[:64], y[:64]),
        "gradcheck (black box), [20, 30, 20, 3], batch 64": black_box,
    }


def timed(function: Callable[[], Any], *, leave_blas: bool) -> float:
    if leave_blas:
        os.environ["OMP_NUM_THREADS"] = str(os.cpu_count() or 1)
    try:
        start = time.perf_counter()
        function()
        return time.perf_counter() - start
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations, shallower network")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        if os.environ.pop(name, None) is not None:
            print(f"(unset {name} for this run: the policy reads it)")
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        raise SystemExit("threadpoolctl is not installed (extra data): the policy is a no-op without it") from None
    blas = [(i["internal_api"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
    load_before = os.getloadavg()[0]
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, function in workloads(args.quick).items():
            one, default = [], []
            for round_ in range(args.repeat):
                order = (True, False) if round_ % 2 else (False, True)
                for leave in order:
                    (default if leave else one).append(timed(function, leave_blas=leave))
            rows.append([label, min(default), min(one), min(default) / min(one)])
    load_after = os.getloadavg()[0]
    print(
        format_table(
            ["library call", "default BLAS threads, s", "one thread (preflight's policy), s", "speed-up"],
            rows,
            title=f"BLAS {blas}, {os.cpu_count()} CPUs; load average {load_before:.2f} before, "
            f"{load_after:.2f} after; best of {args.repeat}",
        )
    )


if __name__ == "__main__":
    main()
