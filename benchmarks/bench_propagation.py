"""The propagation report on a 50 x 512 network against the passes it is made of, side by side in one run.

Rows: the reference network's own ``cost_and_gradients`` (one forward and one backward pass: the floor),
``preflight.propagation.analyze`` (the same passes plus every per-layer statistic and the mean-field recursion), and,
where torch is installed, the same forward + backward in torch (float64 and float32, CPU) keeping every
pre-activation's gradient and its std: what one would write by hand with hooks. Best of ``--repeat`` runs.

Run: ``.venv/bin/python benchmarks/bench_propagation.py`` (about a minute) or ``--quick`` (20 x 256).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from preflight import propagation
from preflight._util.text import format_table
from preflight.nn import Network


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def torch_probe(params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, depth: int) -> Callable[[], Any] | None:
    try:
        import torch
    except ImportError:
        return None
    weights = [torch.from_numpy(params[f"W{layer}"]).requires_grad_(True) for layer in range(1, depth + 1)]
    x, target = torch.from_numpy(X), torch.from_numpy(y)

    def run() -> Any:
        a, logits = x, []
        for layer, w in enumerate(weights, start=1):
            z = a @ w.T
            z.retain_grad()
            logits.append(z)
            a = torch.relu(z) if layer < depth else z
        torch.nn.functional.cross_entropy(a, target).backward()
        return [(z.detach().std().item(), z.grad.norm().item()) for z in logits]  # type: ignore[union-attr]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 hidden layers of width 256")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    hidden, width, m = (20, 256, 256) if args.quick else (50, 512, 256)
    net = Network([width] * (hidden + 1) + [10], hidden="relu", output="softmax")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((m, width)), rng.integers(0, 10, m)
    rows = []
    for dtype in (np.float64, np.float32):
        params = net.init(0, "he", dtype=dtype)
        floor = best_of(args.repeat, lambda params=params: net.cost_and_gradients(params, X, y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", propagation.PropagationWarning)
            ours = best_of(args.repeat, lambda params=params: propagation.analyze(net, params, X, y))
        name = np.dtype(dtype).name
        rows.append([f"Network.cost_and_gradients ({name})", floor, 1.0])
        rows.append([f"propagation.analyze ({name})", ours, ours / floor])
        probe = torch_probe(params, X.astype(dtype), y, net.depth)
        if probe is not None:
            theirs = best_of(args.repeat, probe)
            rows.append([f"torch forward+backward, retain_grad ({name})", theirs, theirs / floor])
    title = f"{hidden} hidden ReLU layers of width {width}, batch {m}: seconds (best of {args.repeat})"
    print(format_table(["what", "seconds", "x cost_and_gradients"], rows, title=title))


if __name__ == "__main__":
    main()
