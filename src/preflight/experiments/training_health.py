"""A learning rate that kills ReLU units partway through training, caught by the health monitor, and the fix.

A 6-hidden-layer ReLU network (width 64, He initialization) learns the digits by mini-batch gradient descent with
the gradient's norm clipped to 1 (so a large learning rate makes large steps rather than an overflow). Partway, the
learning rate jumps from 0.05 to 10 for 20 steps (a warm restart set 100x too high): the steps push whole layers of
ReLU units below zero for every input, where no gradient brings them back. :class:`preflight.propagation.HealthCallback`
diagnoses the network every 20 steps and names the dead layers and the step they died at, with the fix it suggests
(a lower learning rate). The same run with the jump 10x lower stays healthy.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from preflight._util import jsonsafe as strict_json
from preflight._util.validation import check_in_range, check_positive_int
from preflight.nn.network import Network
from preflight.propagation import HealthCallback, HealthReport, HealthWarning

__all__ = ["SUMMARY", "HealthRun", "TrainingHealthResult", "add_arguments", "run"]

SUMMARY = "A learning-rate spike kills ReLU units partway; the health monitor names the layers and the step."


@dataclass(frozen=True)
class HealthRun:
    """One training run: its learning-rate jump, the monitor's report, and the accuracy it ended at."""

    name: str
    peak: float
    report: HealthReport
    accuracy: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "peak_learning_rate": self.peak,
            "accuracy": self.accuracy,
            "verdicts": [v.to_dict() for v in self.report.verdicts],
        }


@dataclass(frozen=True)
class TrainingHealthResult:
    """The run with the spike and the run with the fix."""

    runs: tuple[HealthRun, HealthRun]
    spike: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"spike_steps": list(self.spike), "runs": [r.to_dict() for r in self.runs]}

    def to_json(self, *, indent: int | None = None) -> str:
        """:meth:`to_dict` as strict JSON text."""
        return strict_json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        blocks = []
        for r in self.runs:
            head = (
                f"{r.name}: learning rate 0.05, {r.peak:g} over steps {self.spike[0]}-{self.spike[1] - 1}; "
                f"train accuracy {r.accuracy:.3f}"
            )
            blocks.append(f"{head}\n{r.report}")
        return "\n\n".join(blocks)

    def plot(self, directory: str | Path) -> list[Path]:
        """The spiked run's heat maps and verdict timeline, and the fixed run's timeline (needs the plot extra)."""
        from preflight.propagation.health_figures import plot_heatmaps, plot_timeline

        spiked, fixed = self.runs
        directory = Path(directory)
        paths = [plot_heatmaps(spiked.report.history, directory / "health_spiked_heatmaps.png")]
        for r, tag in ((spiked, "spiked"), (fixed, "fixed")):
            path = directory / f"health_{tag}_timeline.png"
            paths.append(plot_timeline(r.report.history, r.report.verdicts, path, max_update_ratio=0.1))
        return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options of ``preflight experiment training-health``."""
    parser.add_argument("--peak", type=float, default=10.0, help="learning rate during the spike (default 10)")
    parser.add_argument("--fixed-peak", type=float, default=1.0, help="the fix: the spike's learning rate (1)")
    parser.add_argument("--quick", action="store_true", help="300 steps, the spike at 150")
    parser.add_argument("--seed", type=int, default=0)


def run(*, peak: float = 10.0, fixed_peak: float = 1.0, quick: bool = False, seed: int = 0) -> TrainingHealthResult:
    """Train twice from the same start, with the spike at ``peak`` and at ``fixed_peak``; monitor both."""
    peak = check_in_range(peak, name="peak", low=0.0, high=np.inf, low_open=True)
    fixed_peak = check_in_range(fixed_peak, name="fixed_peak", low=0.0, high=np.inf, low_open=True)
    seed = check_positive_int(seed, name="seed", minimum=0)
    from preflight.data import digits
    from preflight.normalize.standardizer import ConstantFeatureWarning, Standardizer

    X, y = digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantFeatureWarning)  # the digits' blank border pixels
        X = Standardizer().fit_transform(X)
    steps = 300 if quick else 600
    spike = (steps // 2, steps // 2 + 20)
    runs = (
        _train(f"spiked (learning rate {peak:g})", peak, X, y, steps, spike, seed),
        _train(f"fixed (learning rate {fixed_peak:g})", fixed_peak, X, y, steps, spike, seed),
    )
    return TrainingHealthResult(runs, spike)


def _train(name: str, peak: float, X: Any, y: Any, steps: int, spike: tuple[int, int], seed: int) -> HealthRun:
    net = Network([64] + [64] * 6 + [10], hidden="relu", output="softmax")
    params = net.init(seed, "he")
    health = HealthCallback(net, X, y, every=20, batch=256, warn=False)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        rate = peak if spike[0] <= step < spike[1] else 0.05
        # As the torch Monitor keeps it: the largest rate since the previous monitored step, at the next one.
        rates, monitored = health.timeline.history.learning_rates, -(-step // 20) * 20
        rates[monitored] = max(rates.get(monitored, rate), rate)
        health(step, params)
        rows = rng.choice(len(X), 128, replace=False)
        cost, grads = net.cost_and_gradients(params, X[rows], y[rows])
        if step % 20 == 0:
            health.timeline.history.losses[step] = cost
        norm = float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))
        scale = rate * min(1.0, 1.0 / norm) if norm > 0 else 0.0  # the gradient's norm clipped to 1
        for name, grad in grads.items():
            params[name] -= scale * grad
    health(steps, params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthWarning)
        report = health.report()
    return HealthRun(name, peak, report, net.accuracy(params, X, y))
