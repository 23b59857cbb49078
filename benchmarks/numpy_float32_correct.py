"""False alarms of float32 NumPy checks on correct learners' networks, at initialization and after training.

``preflight.gradcheck(loss, params, grads)`` with the gradient as float32 arrays (the coordinates, the float64 look
and both pooled looks) on the networks of ``tests/numpy_nets.py`` (ReLU or tanh hidden layers, a sigmoid output,
cross-entropy, L2 0 or 0.7), and ``preflight.nn.gradcheck`` on ``preflight.nn.Network`` (sigmoid and softmax
outputs), every backward correct: each check that fails is a false alarm.

Beside them, the largest share of the pooled look's allowance that a correct float32 backward uses: along each
tensor's gradient ``s`` (the pooled look's direction), ``|(g32 - g64) . s|`` over the allowance the float64 pooled
look holds it to (``1.5 x 10 sigma32`` plus the analytic rounding along ``s``), ``g64`` a float64 backward of the
same values. Training is full-batch gradient descent with the correct backward; at rate 0.5 the sigmoid saturates
(a checkpoint whose loss is no longer finite is skipped).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/numpy_float32_correct.py`` (``--seeds 4``; about 10 minutes on 2
cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.numpy_nets import grads, loss, make

from preflight import gradcheck, nn
from preflight._util.text import format_table
from preflight.check.inputs import measure_noise, parameter_leaves
from preflight.check.kinks import ROUNDING_FACTOR
from preflight.check.perturb import BlackBoxLoss
from preflight.check.pooled import _direction
from preflight.check.verdict import TensorCheck
from preflight.nn.network import Network

INIT = ((((5, 4, 3, 1), 16)), (((12, 16, 8, 1), 64)), (((20, 32, 16, 1), 256)), (((64, 32, 32, 16, 1), 128)),
        (((30, 64, 1), 512)))  # fmt: skip
TRAINED = ((((12, 16, 8, 1), 64)), (((20, 32, 16, 1), 256)), (((64, 32, 32, 16, 1), 128)))
SCHEDULES = ((0.1, (500, 2000)), (0.5, (100, 500, 2000)))


def allowance_share(p: dict[str, Any], X: Any, Y: Any, act: str, lam: float) -> float:
    """The largest ``|(g32 - g64) . s| / allowance`` over the tensors (module docstring)."""
    f = lambda q: loss(q, X, Y, act, lam)  # noqa: E731
    leaves = parameter_leaves(p)
    box = BlackBoxLoss(f, p, leaves)
    f0 = box.value()
    sigma, _ = measure_noise(box.value, leaves, f0, 0, box.output_epsilon)
    g32 = grads(p, X, Y, act, lam)
    wide = {k: v.astype(np.float64) for k, v in p.items()}
    g64 = grads(wide, X.astype(np.float64), Y.astype(np.float64), act, lam)
    worst = 0.0
    for k, a in g32.items():
        direction = _direction(TensorCheck(k, p[k], np.arange(0), a.astype(np.float64)), None)
        if direction is not None:
            s, rounding = direction
            error = abs(float(np.vdot(a.astype(np.float64).reshape(-1) - g64[k].reshape(-1), s)))
            worst = max(worst, error / (1.5 * ROUNDING_FACTOR * sigma + rounding))
    return worst


def checked(p: dict[str, Any], X: Any, Y: Any, act: str) -> tuple[int, int, float]:
    """False alarms and checks over L2 0 and 0.7 at ``p``, and the largest allowance share."""
    alarms = runs = 0
    share = 0.0
    for lam in (0.0, 0.7):
        if not np.isfinite(loss(p, X, Y, act, lam)):
            continue
        report = gradcheck(lambda q, lam=lam: loss(q, X, Y, act, lam), p, grads(p, X, Y, act, lam))
        alarms, runs = alarms + (not report.passed), runs + 1
        share = max(share, allowance_share(p, X, Y, act, lam))
    return alarms, runs, share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--from-seed", type=int, default=10)
    args = parser.parse_args()
    seeds = range(args.from_seed, args.from_seed + args.seeds)
    rows = []
    for act in ("relu", "tanh"):
        totals = [0, 0, 0.0]
        for dims, m in INIT:
            for seed in seeds:
                p, X, Y = make(seed, dims, m)
                a, n, s = checked(p, X, Y, act)
                totals = [totals[0] + a, totals[1] + n, max(totals[2], s)]
        rows.append([f"gradcheck, {act}", "initialization", f"{totals[0]} of {totals[1]}", f"{totals[2]:.2g}"])
        for rate, stops in SCHEDULES:
            for stop in stops:
                totals = [0, 0, 0.0]
                for dims, m in TRAINED:
                    for seed in seeds:
                        p, X, Y = make(seed, dims, m)
                        for _ in range(stop):
                            g = grads(p, X, Y, act, 0.0)
                            p = {k: (v - np.float32(rate) * g[k]).astype(np.float32) for k, v in p.items()}
                        a, n, s = checked(p, X, Y, act)
                        totals = [totals[0] + a, totals[1] + n, max(totals[2], s)]
                rows.append([f"gradcheck, {act}", f"{stop} steps at rate {rate}", f"{totals[0]} of {totals[1]}",
                             f"{totals[2]:.2g}"])  # fmt: skip
            print(rows[-1], file=sys.stderr, flush=True)
    for hidden in ("relu", "tanh"):
        alarms = runs = 0
        for sizes, m, out in (([12, 16, 8, 1], 64, "sigmoid"), ([20, 32, 16, 1], 256, "sigmoid"),
                              ([30, 64, 32, 4], 128, "softmax")):  # fmt: skip
            for l2 in (0.0, 0.7):
                net = Network(sizes, hidden=hidden, output=out, l2=l2)
                for seed in seeds:
                    rng = np.random.default_rng(seed + 100)
                    X = rng.normal(size=(m, sizes[0])).astype(np.float32)
                    y = rng.integers(0, max(2, sizes[-1]), m).astype(np.int64)
                    p = {k: v.astype(np.float32) for k, v in net.init(seed).items()}
                    for step in range(501):
                        if step in (0, 500):
                            alarms, runs = alarms + (not nn.gradcheck(net, p, X, y).passed), runs + 1
                        g = net.gradients(p, X, y)
                        p = {k: (v - np.float32(0.1) * g[k]).astype(np.float32) for k, v in p.items()}
        rows.append([f"nn.gradcheck, {hidden}", "initialization and 500 steps at rate 0.1", f"{alarms} of {runs}", ""])
    print(format_table(["check", "networks", "false alarms", "allowance share"], rows))


if __name__ == "__main__":
    main()
