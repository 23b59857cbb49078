"""What a plain NumPy check resolves in float32: learners' networks with hand-written backwards, correct or buggy.

``preflight.gradcheck(loss, params, grads)`` on the networks of ``tests/numpy_nets.py`` (ReLU or tanh hidden layers,
a sigmoid output, cross-entropy and L2), in float32, over several seeds, with the two looks a float32 NumPy check
adds to its coordinates and without them (the coordinates alone): the float64 look (``preflight.check.float64_look``:
failing coordinates judged again at float64 copies of the parameters, which can only clear a failure) and the pooled
look (``preflight.check.pooled``: every coordinate of a passing tensor moved together along its analytic gradient).
A NumPy check gets no float64 copy of the backward: the gradient comes as float32 arrays.

Printed per network and bug: the bug's relative size ``||g - g_true|| / ||g_true||`` (median over seeds, against a
float64 backward of the same values), how many seeds it was caught at (a bug) or failed at (a correct backward: a
false alarm), with and without the looks, and the evaluations (mean per check).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/numpy_float32_bugs.py`` (``--seeds 6``; a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.numpy_nets import BUGS, grads, loss, make, relative_size

from preflight import gradcheck
from preflight._util.text import format_table

NETS = (("relu", (12, 16, 8, 1), 64), ("relu", (20, 32, 16, 1), 256), ("tanh", (12, 16, 8, 1), 64),
        ("tanh", (20, 32, 16, 1), 256))  # fmt: skip


def run(act: str, dims: tuple[int, ...], m: int, bug: str, lam: float, seed: int, looks: bool) -> tuple[bool, int]:
    p, X, Y = make(seed, dims, m)
    g = grads(p, X, Y, act, lam, bug)
    # Without the looks: the engine's threshold for them (a loss rounding like float32) set beyond any precision.
    with mock.patch("preflight.check.engine.COARSE_EPSILON", np.inf if not looks else 1e-10):
        report = gradcheck(lambda q: loss(q, X, Y, act, lam), p, g)
    return report.passed, report.evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--from-seed", type=int, default=0)
    args = parser.parse_args()
    rows, totals = [], {"alarms": [0, 0, 0], "missed": [0, 0, 0]}
    missed: list[str] = []
    for act, dims, m in NETS:
        for bug in BUGS:
            if bug == "tanh-derivative" and act == "relu":
                continue
            lam = 0.7
            sizes, caught, evals = [], [0, 0], [0, 0]
            for seed in range(args.from_seed, args.from_seed + args.seeds):
                p, X, Y = make(seed, dims, m)
                wide = {k: v.astype(np.float64) for k, v in p.items()}
                truth = grads(wide, X.astype(np.float64), Y.astype(np.float64), act, lam)
                size = relative_size(grads(p, X, Y, act, lam, bug), truth)
                sizes.append(size)
                for k, looks in enumerate((False, True)):
                    passed, n = run(act, dims, m, bug, lam, seed, looks)
                    caught[k] += not passed
                    evals[k] += n
                    if bug and size >= 1e-3 and passed:
                        totals["missed"][k] += 1
                        if looks:
                            missed.append(f"{act} {'-'.join(map(str, dims))} m={m}, {bug}, seed {seed}: {size:.2e}")
                    if not bug and not passed:
                        totals["alarms"][k] += 1
                if bug and size >= 1e-3:
                    totals["missed"][2] += 1
                if not bug:
                    totals["alarms"][2] += 1
            word = "failed (false alarms)" if not bug else "caught"
            rows.append([f"{act} {'-'.join(map(str, dims))}, m={m}", BUGS[bug], f"{np.median(sizes):.1e}",
                         f"{caught[0]}/{args.seeds} {word}", f"{caught[1]}/{args.seeds} {word}",
                         f"{evals[0] // args.seeds:,}", f"{evals[1] // args.seeds:,}"])  # fmt: skip
            print(rows[-1], flush=True, file=sys.stderr)
    print(format_table(["network", "backward", "size", "coordinates alone", "with both looks", "evals alone",
                        "evals with"], rows))  # fmt: skip
    a, b = totals["alarms"], totals["missed"]
    print(f"false alarms: {a[0]} alone, {a[1]} with both looks, of {a[2]} correct runs")
    print(f"bugs >= 1e-3 missed: {b[0]} alone, {b[1]} with both looks, of {b[2]} runs")
    for line in missed:
        print(f"  missed with both looks: {line}")


if __name__ == "__main__":
    main()
