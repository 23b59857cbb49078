"""What watching a training loop costs: preflight.torch.Monitor against the plain loop and wandb.watch-like logging.

Two training loops (SGD with momentum, cross-entropy, CPU): a 20-layer ReLU MLP of width 256 on batches of 128, and
a small CNN (three 3x3 convolutions of 16-32-32 channels with max-pooling, then a linear layer) on batches of 64
images of 3x32x32. Each loop runs three ways on three copies of the model, in lockstep (step i of each way back to
back, the order rotating), so that the load of a shared machine falls on all of them alike:

- ``plain``: the loop alone (the floor);
- ``Monitor(every=50)``: the loop inside ``with Monitor(model, every=50, optimizer=opt)``;
- ``histc every 50``: what ``wandb.watch(model, log="all", log_freq=50)`` does by itself, with torch's own
  ``torch.histc`` of every parameter and every gradient (64 bins) every 50 steps, kept as tensors.

Printed per loop: milliseconds per step (median), the overhead over the plain loop in total time, the cost of a
monitored step (steps 0, 50, 100, ...) against the plain loop's same step (the median of those ratios), and the
memory kept: the monitor's history (pickled size) against the histograms' tensors.

Run: ``.venv/bin/python benchmarks/bench_monitor.py`` (a few minutes on 2 cores) or ``--quick``.
"""

from __future__ import annotations

import argparse
import math
import pickle
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from preflight._util.text import format_table
from preflight.torch import Monitor


def mlp() -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(19):
        layers += [nn.Linear(256, 256), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(256, 10))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )  # fmt: skip


LOOPS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]] = {
    "20-layer MLP, width 256, batch 128": (mlp, (256,), 128),
    "CNN 16-32-32 channels, 3x32x32, batch 64": (cnn, (3, 32, 32), 64),
}


class Histograms:
    """wandb.watch(log="all", log_freq=every) reduced to its work: torch.histc of each parameter and gradient."""

    def __init__(self, model: nn.Module, every: int) -> None:
        self.model, self.every, self.kept, self.step = model, every, [], 0

    def after_backward(self) -> None:
        if self.step % self.every == 0:
            for p in self.model.parameters():
                self.kept.append(torch.histc(p.detach(), bins=64))
                if p.grad is not None:
                    self.kept.append(torch.histc(p.grad, bins=64))
        self.step += 1


class Loop:
    """One of the three ways to train one model: its model, optimizer, batch and per-step seconds."""

    def __init__(self, way: str, build: Callable[[], nn.Module], shape: tuple[int, ...], batch: int) -> None:
        torch.manual_seed(0)
        self.way, self.model = way, build()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.x, self.y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
        self.monitor = Monitor(self.model, every=50, optimizer=self.opt, warn=False) if way == "monitor" else None
        self.histograms = Histograms(self.model, 50) if way == "histc" else None
        self.times: list[float] = []
        if self.monitor is not None:
            self.monitor.start()

    def step(self) -> None:
        start = time.perf_counter()
        self.opt.zero_grad()
        nn.functional.cross_entropy(self.model(self.x), self.y).backward()
        if self.histograms is not None:
            self.histograms.after_backward()
        self.opt.step()
        self.times.append(time.perf_counter() - start)

    def kept(self) -> int:
        """Bytes kept: the monitor's history (pickled), or the histograms' tensors."""
        if self.monitor is not None:
            self.monitor.stop()
            return len(pickle.dumps(self.monitor.timeline.history))
        if self.histograms is not None:
            return sum(h.numel() * h.element_size() for h in self.histograms.kept)
        return 0


WAYS = ("plain", "Monitor(every=50)", "histc every 50")


def measure(build: Callable[[], nn.Module], shape: tuple[int, ...], batch: int, steps: int) -> list[list[Any]]:
    """The three ways in lockstep: step i of each runs back to back (in an order rotating with i), so the load of a
    shared machine falls on all three alike; a monitored step is compared with the plain loop's same step."""
    loops = [Loop(way, build, shape, batch) for way in ("plain", "monitor", "histc")]
    for _ in range(10):  # warm-up: allocator, kernels (their steps 0-9 are timed and dropped below)
        for loop in loops:
            loop.step()
    for loop in loops:
        loop.times.clear()
        if loop.monitor is not None:
            loop.monitor.stop()
            loop.monitor = Monitor(loop.model, every=50, optimizer=loop.opt, warn=False).start()
        if loop.histograms is not None:
            loop.histograms = Histograms(loop.model, 50)
    for i in range(steps):
        for k in range(3):
            loops[(i + k) % 3].step()
    plain = loops[0].times
    rows = []
    for way, loop in zip(WAYS, loops, strict=True):
        on = [t / p for j, (t, p) in enumerate(zip(loop.times, plain, strict=True)) if j % 50 == 0]
        rows.append(
            [
                way,
                1e3 * statistics.median(loop.times),
                100 * (sum(loop.times) / sum(plain) - 1),
                math.nan if loop is loops[0] else statistics.median(on),
                loop.kept() / 1024,
            ]
        )
    return rows


def fixed_cost(steps: int) -> float:
    """Microseconds the monitor adds to a step it does not monitor (its output check and its optimizer hooks), from
    a model so small that its step is mostly that: 4 -> 4 -> 10, batch 8, every=10**9 (only step 0 is monitored,
    and dropped), in lockstep with a plain one."""
    loops = [Loop(way, lambda: nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 10)), (4,), 8)
             for way in ("plain", "monitor")]  # fmt: skip
    assert loops[1].monitor is not None
    loops[1].monitor.stop()
    loops[1].monitor = Monitor(loops[1].model, every=10**9, optimizer=loops[1].opt, warn=False).start()
    for loop in loops:
        loop.step()
        loop.times.clear()
    for i in range(steps):
        for k in range(2):
            loops[(i + k) % 2].step()
    loops[1].monitor.stop()
    return 1e6 * (statistics.median(loops[1].times) - statistics.median(loops[0].times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 steps, one repeat")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None, help="lockstep runs; the table shows their medians")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: steadier on a busy box)")
    args = parser.parse_args()
    steps = args.steps or (300 if args.quick else 1000)
    repeat = args.repeat or (1 if args.quick else 3)
    torch.set_num_threads(args.threads)
    rows = []
    for name, (build, shape, batch) in LOOPS.items():
        runs = [measure(build, shape, batch, steps) for _ in range(repeat)]
        for i, way in enumerate(WAYS):
            figures = [statistics.median(run[i][c] for run in runs) for c in range(1, 5)]
            rows.append([name, way, *figures[:3], f"{figures[3]:.1f} KiB"])
    headers = ["loop", "way", "ms/step (median)", "overhead % (total time)", "monitored step / plain step", "kept"]
    title = f"{steps} steps of each way in lockstep, median of {repeat} run(s), {args.threads} torch thread(s)"
    print(format_table(headers, [[c if c == c else "" for c in row] for row in rows], title=title))
    print(f"\nbetween monitored steps the monitor adds {fixed_cost(4000):.0f} us to a step (output check, hooks)")


if __name__ == "__main__":
    main()
