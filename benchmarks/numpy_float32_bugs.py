"""What a plain NumPy check resolves in float32: learners' networks with hand-written backwards, correct or buggy.

``preflight.gradcheck(loss, params, grads)`` on the networks of ``tests/numpy_nets.py`` (ReLU or tanh hidden layers,
a sigmoid output, cross-entropy and L2), in float32, over several seeds, with the two looks a float32 NumPy check
adds to its coordinates and without them (the coordinates alone): the float64 look (``preflight.check.float64_look``:
failing coordinates judged again at float64 copies of the parameters, which can only clear a failure) and the pooled
look (``preflight.check.pooled``: every coordinate of a passing tensor moved together along its analytic gradient, in
the float64 loss where float32 set kinks aside).
Given as arrays, the gradient exists in float32 only; given as a function, it also runs at float64 copies of the
parameters (``preflight.check.numpy_reference``), a third column.

Printed per network and bug: the bug's relative size ``||g - g_true|| / ||g_true||`` (median over seeds, against a
float64 backward of the same values), how many seeds it was caught at (a bug) or failed at (a correct backward: a
false alarm) in the three settings, and the evaluations (mean per check, in the same order).

At random initialization, or with ``--train N`` after N steps of gradient descent (rate 0.1, the correct backward,
the same L2), as the course checks again after some training.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/numpy_float32_bugs.py`` (``--seeds 6``; a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.numpy_nets import BUGS, grads, loss, make, relative_size, train

from preflight import gradcheck
from preflight._util.text import format_table

NETS = (("relu", (12, 16, 8, 1), 64), ("relu", (20, 32, 16, 1), 256), ("tanh", (12, 16, 8, 1), 64),
        ("tanh", (20, 32, 16, 1), 256))  # fmt: skip


def problem(act: str, dims: tuple[int, ...], m: int, lam: float, seed: int, steps: int) -> tuple[Any, Any, Any]:
    """The network at ``seed``, after ``steps`` of gradient descent (rate 0.1) with the correct backward."""
    p, X, Y = make(seed, dims, m)
    return train(p, X, Y, act, lam, steps), X, Y


def run(p: Any, X: Any, Y: Any, act: str, bug: str, lam: float, mode: int) -> tuple[bool, int]:
    """mode 0: the gradient as arrays, coordinates alone; 1: as arrays, with the looks; 2: as a function (the float64
    copy too)."""
    g: Any = grads(p, X, Y, act, lam, bug)
    if mode == 2:
        g = lambda q: grads(q, X, Y, act, lam, bug)  # noqa: E731
    # Without the looks: the engine's threshold for them (a loss rounding like float32) set beyond any precision.
    with mock.patch("preflight.check.engine.COARSE_EPSILON", np.inf if mode == 0 else 1e-10):
        report = gradcheck(lambda q: loss(q, X, Y, act, lam), p, g)
    return report.passed, report.evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--from-seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=0, help="steps of gradient descent before the check")
    args = parser.parse_args()
    rows, totals = [], {"alarms": [0, 0, 0, 0], "missed": [0, 0, 0, 0]}
    missed: list[str] = []
    for act, dims, m in NETS:
        for bug in BUGS:
            if bug == "tanh-derivative" and act == "relu":
                continue
            lam = 0.7
            sizes, caught, evals = [], [0, 0, 0], [0, 0, 0]
            for seed in range(args.from_seed, args.from_seed + args.seeds):
                p, X, Y = problem(act, dims, m, lam, seed, args.train)
                wide = {k: v.astype(np.float64) for k, v in p.items()}
                truth = grads(wide, X.astype(np.float64), Y.astype(np.float64), act, lam)
                size = relative_size(grads(p, X, Y, act, lam, bug), truth)
                sizes.append(size)
                for k in range(3):
                    passed, n = run(p, X, Y, act, bug, lam, k)
                    caught[k] += not passed
                    evals[k] += n
                    if bug and size >= 1e-3 and passed:
                        totals["missed"][k] += 1
                        if k == 1:
                            missed.append(f"{act} {'-'.join(map(str, dims))} m={m}, {bug}, seed {seed}: {size:.2e}")
                    if not bug and not passed:
                        totals["alarms"][k] += 1
                if bug and size >= 1e-3:
                    totals["missed"][3] += 1
                if not bug:
                    totals["alarms"][3] += 1
            word = "failed (false alarms)" if not bug else "caught"
            counts = [f"{c}/{args.seeds} {word}" for c in caught]
            means = [f"{e // args.seeds:,}" for e in evals]
            net = f"{act} {'-'.join(map(str, dims))}, m={m}"
            rows.append([net, BUGS[bug], f"{np.median(sizes):.1e}", *counts, *means])
            print(rows[-1], flush=True, file=sys.stderr)
    print(format_table(["network", "backward", "size", "arrays, coordinates alone", "arrays, both looks",
                        "a function, float64 copy", "evals", "evals", "evals"], rows))  # fmt: skip
    a, b = totals["alarms"], totals["missed"]
    print(f"false alarms: {a[0]} alone, {a[1]} with both looks, {a[2]} with the copy, of {a[3]} correct runs")
    print(f"bugs >= 1e-3 missed: {b[0]} alone, {b[1]} with both looks, {b[2]} with the copy, of {b[3]} runs")
    for line in missed:
        print(f"  missed with both looks (arrays): {line}")


if __name__ == "__main__":
    main()
