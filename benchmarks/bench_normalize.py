"""Standardizer vs scikit-learn's StandardScaler, side by side in one run: fit, transform, extra memory.

Targets (issue 4), at 5e6 x 20 in float64 and float32: fit >= 3x faster than StandardScaler.fit, transform >= 2x
faster than StandardScaler.transform, extra memory <= 64 MB beyond the input and the output. With sample_weight
(issue 14, weights uniform in [0, 2)): the weighted fit >= 3x faster than StandardScaler's weighted fit.
``a.sum(axis=0)`` is printed as the ceiling (one read of the input). Extra memory is tracemalloc's peak, which
NumPy reports its allocations to, minus the output's size.

Run: ``.venv/bin/python benchmarks/bench_normalize.py`` (``--quick`` for 1e6 rows).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.preprocessing import StandardScaler

from preflight import Standardizer
from preflight._util.text import format_table
from preflight.normalize.moments import available_cores

MB = 1 << 20


def best_times(works: list[Callable[[], Any]], repeat: int) -> list[tuple[float, float]]:
    """Best wall time and best CPU time (all threads of this process) of each of ``works`` over ``repeat`` rounds.

    The works take turns within a round, so a slow spell of the machine falls on both sides of a comparison. CPU
    time is the work done, which other processes on a loaded machine disturb much less than the wall time (they
    take cores away, not cycles from the work): on a shared machine it is the steadier comparison.
    """
    times: list[list[tuple[float, float]]] = [[] for _ in works]
    for _ in range(repeat):
        for work, spent in zip(works, times, strict=True):
            gc.collect()
            start, cpu = time.perf_counter(), time.process_time()
            work()
            spent.append((time.perf_counter() - start, time.process_time() - cpu))
    return [(min(t[0] for t in spent), min(t[1] for t in spent)) for spent in times]


def extra_memory(work: Callable[[], Any]) -> float:
    """Peak bytes allocated while ``work`` runs, less the size of what it returns (the output), in MB."""
    gc.collect()
    tracemalloc.start()
    result = work()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    kept = result.nbytes if isinstance(result, np.ndarray) else 0
    return (peak - kept) / MB


def measure(x: np.ndarray, repeat: int) -> list[list[Any]]:
    w = np.random.default_rng(1).uniform(0.0, 2.0, x.shape[0])
    for weights in (None, w):
        ours, theirs = Standardizer().fit(x, sample_weight=weights), StandardScaler().fit(x, sample_weight=weights)
        # Both keep float64 statistics; they must agree before their speeds are worth comparing.
        assert np.allclose(ours.mean_, theirs.mean_, rtol=1e-10, atol=1e-12 * ours.scale_.max())
        assert np.allclose(ours.scale_, theirs.scale_, rtol=1e-10)
    chunks = np.array_split(x, 50)
    weight_chunks = np.array_split(w, 50)

    def partial(estimator: Any, weighted: bool = False) -> Any:
        for chunk, chunk_w in zip(chunks, weight_chunks, strict=True):
            estimator.partial_fit(chunk, sample_weight=chunk_w if weighted else None)
        return estimator

    cases = [
        ("fit", lambda: StandardScaler().fit(x), lambda: Standardizer().fit(x), 3.0),
        (
            "fit, sample_weight",
            lambda: StandardScaler().fit(x, sample_weight=w),
            lambda: Standardizer().fit(x, sample_weight=w),
            3.0,
        ),
        ("transform", lambda: theirs.transform(x), lambda: ours.transform(x), 2.0),
        ("partial_fit, 50 chunks", lambda: partial(StandardScaler()), lambda: partial(Standardizer()), None),
        (
            "partial_fit, 50 chunks, weighted",
            lambda: partial(StandardScaler(), weighted=True),
            lambda: partial(Standardizer(), weighted=True),
            None,
        ),
    ]
    rows = []
    for name, sklearn_work, our_work, target in cases:
        (t_sklearn, c_sklearn), (t_ours, c_ours) = best_times([sklearn_work, our_work], repeat)
        m_sklearn, m_ours = extra_memory(sklearn_work), extra_memory(our_work)
        speedup = t_sklearn / t_ours
        verdict = "" if target is None else ("ok" if speedup >= target and m_ours <= 64 else "MISSED")
        goal = "" if target is None else f">= {target:g}x, <= 64 MB"
        cpu = round(c_sklearn / c_ours, 2)
        rows.append([name, str(x.dtype), t_sklearn, t_ours, round(speedup, 2), cpu, m_sklearn, m_ours, goal, verdict])
    ((t_sum, _),) = best_times([lambda: x.sum(axis=0)], repeat)
    rows.append(["a.sum(axis=0) (ceiling)", str(x.dtype), "", t_sum, "", "", "", "", "", ""])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=5e6)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1e6 rows, 2 repeats")
    args = parser.parse_args()
    rows, repeat = (int(1e6), 2) if args.quick else (int(args.rows), args.repeat)
    rng = np.random.default_rng(0)
    table = []
    for dtype in (np.float64, np.float32):
        x = rng.standard_normal((rows, args.features), dtype=dtype)
        x *= np.geomspace(1e-3, 1e3, args.features).astype(dtype)
        x += np.linspace(-1e3, 1e3, args.features).astype(dtype)
        table += measure(x, repeat)
        del x
    headers = [
        "operation",
        "dtype",
        "sklearn s",
        "preflight s",
        "speedup",
        "CPU-time ratio",
        "sklearn MB",
        "preflight MB",
        "goal",
        "",
    ]
    title = (
        f"Standardizer vs sklearn StandardScaler, {rows:.3g} x {args.features}, best of {repeat}; "
        f"{available_cores()} cores (affinity), os.cpu_count={os.cpu_count()}, numpy {np.__version__}, "
        f"load average {os.getloadavg()[0]:.1f} at the end; "
        "MB = extra memory beyond input and output (tracemalloc peak)"
    )
    print(format_table(headers, table, title=title))


if __name__ == "__main__":
    main()
