"""Full gradient check of a 1e6-parameter MLP ([1024, 768, 256, 10], tanh, softmax, batch 64): preflight.nn.gradcheck
in float64 and float32, against the cost of torch.autograd.gradcheck's 2P loss evaluations (extrapolated).

- ``preflight.nn.gradcheck`` runs in a subprocess per dtype (one BLAS thread): CPU seconds, wall seconds, verdict, and
  the subprocess's peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the whole interpreter).
- torch.autograd.gradcheck (fast_mode=False) evaluates its function twice per input element: the same cost from the
  flat parameter vector is timed over a few thousand evaluations here (one torch thread, under ``no_grad`` as its
  numerical Jacobian runs, which flatters torch) and multiplied by 2P: an extrapolation, not a run (it would take
  hours).
- The black box's floor, 2P x one ``net.cost`` call, extrapolated the same way.

Run: ``.venv/bin/python benchmarks/bench_gradcheck_million.py`` (about 2 minutes on an idle 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from threadpoolctl import threadpool_limits

import preflight
from bench_gradcheck import problem, torch_cost
from preflight._util.text import format_table

SIZES = [1024, 768, 256, 10]


def one_check(dtype: str) -> dict[str, object]:
    """Run in a subprocess: the check in ``dtype``, its times and the process's peak memory."""
    net, params, X, y = problem(SIZES)
    params = {n: v.astype(dtype) for n, v in params.items()}
    X = X.astype(dtype)
    with threadpool_limits(limits=1, user_api="blas"):
        wall, cpu = time.perf_counter(), time.process_time()
        report = preflight.nn.gradcheck(net, params, X, y, progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "cpu": cpu,
        "wall": wall,
        "passed": report.passed,
        "evaluations": report.evaluations,
        "difference": report.difference,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def torch_seconds_per_loss(count: int) -> float:
    """CPU seconds of one evaluation of the cost torch.autograd.gradcheck would perturb (flat float64 theta)."""
    import torch

    torch.set_num_threads(1)
    theta, cost = torch_cost(*problem(SIZES))

    with torch.no_grad():
        cost(theta)
        clock = time.process_time()
        for i in range(count):
            theta[i] += 1e-6  # gradcheck moves one entry in place per evaluation
            cost(theta)
            theta[i] -= 1e-6
        return (time.process_time() - clock) / count


def numpy_seconds_per_loss(count: int) -> float:
    net, params, X, y = problem(SIZES)
    with threadpool_limits(limits=1, user_api="blas"):
        clock = time.process_time()
        for _ in range(count):
            net.cost(params, X, y)
        return (time.process_time() - clock) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", choices=["float64", "float32"], help=argparse.SUPPRESS)
    parser.add_argument("--evaluations", type=int, default=2000, help="torch loss evaluations timed (default 2000)")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_check(args.one)))
        return
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at start: {load}", flush=True)
    here = os.path.dirname(os.path.abspath(__file__))
    runs = {}
    for dtype in ("float64", "float32"):
        out = subprocess.run(
            [sys.executable, os.path.join(here, "bench_gradcheck_million.py"), "--one", dtype],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        runs[dtype] = json.loads(out.stdout.strip().splitlines()[-1])
        print(dtype, runs[dtype], flush=True)
    count = sum(v.size for v in problem(SIZES)[1].values())
    per_torch = torch_seconds_per_loss(args.evaluations)
    per_numpy = numpy_seconds_per_loss(max(args.evaluations // 4, 50))
    rows = []
    for dtype, run in runs.items():
        rows.append(
            [
                f"preflight.nn.gradcheck, {dtype}",
                f"{run['cpu']:.1f} ({run['wall']:.1f})",
                f"{run['peak_mb']:.0f}",
                f"{run['evaluations']:,}",
                "passed" if run["passed"] else "FAILED",
            ]
        )
    rows.append(
        [
            f"torch.autograd.gradcheck, float64: 2P x {per_torch * 1e3:.2f} ms (timed on {args.evaluations:,})",
            f"{2 * count * per_torch:.0f} extrapolated",
            "",
            f"{2 * count:,}",
            "",
        ]
    )
    rows.append(
        [
            f"black-box floor, float64: 2P x net.cost {per_numpy * 1e3:.2f} ms",
            f"{2 * count * per_numpy:.0f} extrapolated",
            "",
            f"{2 * count:,}",
            "",
        ]
    )
    print()
    print(f"Full check, MLP {SIZES} ({count:,} parameters), batch 64, every coordinate, one thread")
    print(format_table(["checker", "CPU s (wall)", "peak MB", "loss evaluations", "verdict"], rows))
    f64, f32 = runs["float64"]["cpu"], runs["float32"]["cpu"]
    print(
        f"\nfloat32 / float64 CPU: {f32 / f64:.2f}; torch (extrapolated) / preflight float64: "
        f"{2 * count * per_torch / f64:.0f}x; load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
