"""Which coordinates a float32 ReLU gradient check sets aside as kinks, and on what evidence (issue #12).

The README's float32 ReLU check (``preflight gradcheck --hidden relu --dtype float32 --sizes 16 32 32 10 --batch
128``, the same network, parameters and batch, rebuilt here) sets coordinates aside as "kink within the step". For
each of them this script says

- whether the closer look (:func:`preflight.check.dense.closer_look`, which decides the coordinates the second
  look could only match on its short difference), run on it whatever set it aside, sees a kink (its windows
  across the point stop widening short of 2h, or its two sides disagree) and agrees to set it aside;
- whether a kink is really there: in float64, some hidden unit of some sample changes side of its ReLU kink as the
  coordinate moves over [-2h, 2h] (h: float32's step for it).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/kink_evidence.py`` (a few seconds; ``--seeds 0 1 2``,
``--batch 256``).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from preflight._util.text import format_table
from preflight.check import engine, numdiff
from preflight.check import verdict as verdict_module
from preflight.check.dense import GRID, closer_look
from preflight.nn import Network
from preflight.nn.fast_check import check_network

SIZES = [16, 32, 32, 10]


def problem(seed: int, batch: int) -> tuple[Network, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The CLI's reference network for ``--hidden relu --dtype float32`` (preflight.cli.gradcheck.run)."""
    net = Network(SIZES, "relu", "softmax")
    rng = np.random.default_rng(seed)
    params = net.init(rng, "he", dtype="float32")
    params = {k: (v + 0.05 * rng.standard_normal(v.shape)).astype("float32") for k, v in params.items()}
    X = rng.standard_normal((batch, SIZES[0]))
    rng.integers(0, 2, (batch, SIZES[-1]))  # the CLI draws every head's targets, in this order, and keeps one
    y = rng.integers(0, SIZES[-1], batch)
    return net, params, X, y


def real_kink(net: Network, params: dict[str, np.ndarray], X: np.ndarray, name: str, index: Any) -> bool:
    """Some hidden unit of some sample changes side of its kink over [-2h, 2h] (float64)."""
    theta = float(params[name][index])
    h = float(numdiff.step_size(np.array([theta], dtype=params[name].dtype))[0])
    masks = []
    for move in np.linspace(-2 * h, 2 * h, 65):
        moved = {k: v.astype(np.float64) for k, v in params.items()}
        moved[name][index] += move
        masks.append(np.concatenate([(z > 0).ravel() for z in net.trace(moved, X.astype(np.float64)).logits[:-1]]))
    return any(not np.array_equal(masks[0], m) for m in masks[1:])


def run(seed: int, batch: int) -> dict[str, Any]:
    net, params, X, y = problem(seed, batch)
    seen: dict[tuple[str, int], bool] = {}  # (tensor, flat index) -> the closer look sees a kink and sets it aside
    original = verdict_module.second_look

    def second_look(t: Any, evaluate: Any, f0: float, sigma: float) -> None:
        original(t, evaluate, f0, sigma)
        rows = np.flatnonzero(t.kink)
        if rows.size == 0:
            return
        values: dict[float, Any] = {0.0: np.full(rows.size, f0)}
        positions: dict[float, Any] = {0.0: np.zeros(rows.size)}
        for scale in GRID:
            offset = t.offsets(scale, rows)
            values[scale] = evaluate({t.name: offset})[t.name].reshape(-1)[t.index[rows]]
            positions[scale] = verdict_module.signed_steps(t, offset, rows)
        g = t.g.reshape(-1)[t.index[rows]]
        look = closer_look(values, positions, t.h[rows], g, verdict_module.analytic_noise(t)[rows], sigma)
        for r, k in zip(rows.tolist(), look.kink.tolist(), strict=True):
            seen[(t.name, int(t.index[r]))] = bool(k)

    engine.second_look = second_look  # the engine's own reference to it
    try:
        report = check_network(net, params, X, y)
    finally:
        engine.second_look = original
    excused = report.kinks
    real = sum(real_kink(net, params, X, name, c.index) for name, c in excused)
    shape = {n: p.shape for n, p in params.items()}
    flat = [(name, int(np.ravel_multi_index(c.index, shape[name]))) for name, c in excused]
    with_evidence = sum(seen.get(key, False) for key in flat)
    return {
        "seed": seed,
        "batch": batch,
        "verdict": "PASSED" if report.passed else "FAILED",
        "coordinates": sum(r.size for r in report.parameters.values()),
        "set aside": len(excused),
        "kink seen by the closer look": with_evidence,
        "no kink seen": len(excused) - with_evidence,
        "real kink within 2h (float64)": real,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    rows = [run(seed, args.batch) for seed in args.seeds]
    print(format_table(list(rows[0]), [list(r.values()) for r in rows]))


if __name__ == "__main__":
    main()
