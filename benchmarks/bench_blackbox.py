"""The black-box check's overhead over its floor: N loss calls in a plain loop against BlackBoxLoss.__call__ over N
coordinates, and the whole preflight.gradcheck against 2P loss calls.

The same float64 tanh MLPs as ``bench_gradcheck.py`` (batch 64, l2 0.01), one BLAS thread, CPU time. Per size and
repetition the plain loop and the black box run back to back (so a change of the machine's load hits both); each
ratio is taken on the best of ``--repeat`` runs. N is 2P up to ``--cap`` coordinates (the cost of a loss call does
not depend on which coordinate moved, so a cap keeps the 1e5 row to a few minutes).

Run: ``.venv/bin/python benchmarks/bench_blackbox.py`` (about 6 minutes on an idle 2-core machine).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

import preflight
from bench_gradcheck import DEFAULT_SIZES, problem
from preflight._util.text import format_table
from preflight.check.inputs import parameter_leaves
from preflight.check.perturb import BlackBoxLoss


def cpu(run: Callable[[], Any]) -> float:
    clock = time.process_time()
    run()
    return time.process_time() - clock


def row(text: str, repeat: int, cap: int, full_limit: int) -> list[str]:
    net, params, X, y = problem([int(s) for s in text.split(",")])
    count = sum(v.size for v in params.values())
    grads = net.gradients(params, X, y)

    def loss(p: dict[str, np.ndarray]) -> float:
        return net.cost(p, X, y)

    calls = min(2 * count, cap)
    names, offsets, left = list(params), {}, calls // 2
    for n in names:  # N / 2 coordinates, first tensors first, moved up and then down: N loss calls
        take = min(left, params[n].size)
        offsets[n] = np.zeros(params[n].shape)
        offsets[n].reshape(-1)[:take] = 6e-6
        left -= take
    down = {n: -o for n, o in offsets.items()}
    plain, box, full = [], [], []
    for _ in range(repeat):
        plain.append(cpu(lambda: [loss(params) for _ in range(2 * (calls // 2))]))
        evaluator = BlackBoxLoss(loss, params, parameter_leaves(params))
        evaluator.unperturbed = loss(params)
        box.append(cpu(lambda e=evaluator: (e(offsets), e(down))))
        if count <= full_limit or not full:
            full.append(cpu(lambda: preflight.gradcheck(loss, params, grads, progress=False)))
    per_call = min(plain) / (2 * (calls // 2))
    return [
        f"{count:,} ({text})",
        f"{per_call * 1e6:.0f} us",
        f"{2 * (calls // 2):,}",
        f"{min(plain):.2f}",
        f"{min(box):.2f}",
        f"{min(box) / min(plain):.3f}",
        f"{min(full):.2f} ({len(full)}x)",
        f"{min(full) / (2 * count * per_call):.3f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cap", type=int, default=40_000, help="loss calls timed per run (default 40,000)")
    parser.add_argument("--full-limit", type=int, default=20_000, help="whole check best of N up to this many params")
    args = parser.parse_args()
    print("load average at start:", ", ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for text in args.sizes:
            rows.append(row(text, args.repeat, args.cap, args.full_limit))
            print(format_table(HEADER, rows), flush=True)
    print(
        f"\nCPU seconds, best of {args.repeat}, one BLAS thread. 'call / loop' is BlackBoxLoss.__call__ over N "
        "coordinates against N plain loss calls; 'check / 2P' the whole preflight.gradcheck (noise probe, second "
        "looks, verdict) against 2P plain loss calls. Load average at end: "
        + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    )


HEADER = [
    "parameters (layers)",
    "one loss",
    "N",
    "N loss calls s",
    "BlackBoxLoss s",
    "call / loop",
    "gradcheck s",
    "check / 2P",
]


if __name__ == "__main__":
    main()
