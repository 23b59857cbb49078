"""The course's "Initialization" exercise: zeros vs large random vs He initialization on the circles data.

Reproduces the Deep Learning Specialization's table with the reference network: data from
``np.random.seed(1)`` / ``np.random.seed(2)`` and ``make_circles(n, noise=.05)``, network [2, 10, 5, 1]
relu-relu-sigmoid, full-batch gradient descent at learning rate 0.01 for 15,000 iterations, weights drawn after
``np.random.seed(3)`` layer by layer as ``randn(n_l, n_{l-1}) * scale``, zero biases.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from preflight import data, init
from preflight._util.aliases import Params
from preflight._util.figures import new_figure, save_figure
from preflight._util.text import Table
from preflight._util.validation import check_in_range, check_positive_int
from preflight.experiments.result import ResultView
from preflight.nn.network import Network

__all__ = ["SCHEMES", "SUMMARY", "InitSchemesResult", "SchemeRun", "add_arguments", "run"]

SUMMARY = "The course's initialization table: zeros, randn x 10 and He on the circles data."
SIZES = [2, 10, 5, 1]
#: Course label -> weight initializer (each drawn after np.random.seed(3), layer by layer).
SCHEMES: dict[str, init.Initializer] = {
    "zeros": init.zeros,
    "randn x 10": init.normal(10.0),
    "He": init.he_normal,
}
SATURATION_NOTE = (
    "randn x 10: the course prints cost inf at iteration 0: its sigmoid rounds to exactly 1.0 for large logits "
    "and log(1 - a) = log(0). preflight computes the cross-entropy from the logits, so the same cost is large "
    "but finite."
)


@dataclass(frozen=True)
class SchemeRun:
    """One row of the table."""

    scheme: str
    iterations: list[int]
    costs: list[float]
    train_accuracy: float
    test_accuracy: float
    params: Params = field(repr=False)


@dataclass(frozen=True, repr=False)
class InitSchemesResult(ResultView):
    """The table and what drew it."""

    runs: list[SchemeRun]
    network: Network
    train: tuple[Any, Any] = field(repr=False)
    test: tuple[Any, Any] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """``runs``: per scheme its costs (at every recorded iteration, from 0) and accuracies."""
        return {
            "network": repr(self.network),
            "runs": [
                {
                    "scheme": r.scheme,
                    "iterations": r.iterations,
                    "costs": r.costs,
                    "train_accuracy": r.train_accuracy,
                    "test_accuracy": r.test_accuracy,
                }
                for r in self.runs
            ],
        }

    def headline(self) -> str:
        last = self.runs[0].iterations[-1] if self.runs and self.runs[0].iterations else 0
        scores = ", ".join(f"{r.scheme} {r.train_accuracy:.2f} / {r.test_accuracy:.2f}" for r in self.runs)
        return f"train / test accuracy after {last} iterations: {scores}"

    def tables(self) -> list[Table]:
        last = self.runs[0].iterations[-1] if self.runs and self.runs[0].iterations else 0
        costs = [0, last] if last else [0]
        rows = [
            [r.scheme, *(repr(r.costs[0 if i == 0 else -1]) for i in costs), r.train_accuracy, r.test_accuracy]
            for r in self.runs
        ]
        notes = ["", SATURATION_NOTE] if any(r.scheme == "randn x 10" for r in self.runs) else []
        return [
            Table(
                ["init", *(f"cost at {i}" for i in costs), "train", "test"],
                rows,
                title=f"Initialization on the course's circles data ({self.network})",
                notes=notes,
            )
        ]

    def figure(self) -> Any:
        """Cost curves and the decision boundary of each scheme."""
        fig = new_figure(figsize=(4.2 * (1 + len(self.runs)), 3.6), layout="constrained")
        axes = fig.subplots(1, 1 + len(self.runs))
        for r in self.runs:
            axes[0].plot(r.iterations, r.costs, marker="o", label=r.scheme)
        axes[0].set(xlabel="iteration", ylabel="cost", yscale="log", title="training cost")
        axes[0].legend()
        X, y = self.train
        grid = np.linspace(-1.5, 1.5, 200)
        gx, gy = np.meshgrid(grid, grid)
        points = np.c_[gx.ravel(), gy.ravel()]
        for ax, r in zip(axes[1:], self.runs, strict=True):
            labels = self.network.predict(r.params, points).reshape(gx.shape)
            ax.contourf(gx, gy, labels, levels=[-0.5, 0.5, 1.5], cmap="coolwarm", alpha=0.3)
            ax.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", s=8)
            ax.set(title=f"{r.scheme}: train {r.train_accuracy:.2f}", xticks=[], yticks=[])
        return fig

    def plot(self, directory: Path) -> list[Path]:
        """``init_schemes.png``: the figure of :meth:`figure`."""
        return [save_figure(self.figure(), Path(directory) / "init_schemes.png")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options (the defaults are the course's)."""
    parser.add_argument("--iterations", type=int, default=15000, help="gradient descent steps (default 15000)")
    parser.add_argument("--learning-rate", type=float, default=0.01, help="step size (default 0.01)")


def run(*, iterations: int = 15000, learning_rate: float = 0.01, record_every: int = 1000) -> InitSchemesResult:
    """Train the course's network from each initialization and measure it.

    Examples
    --------
    >>> result = run(iterations=1000)  # doctest: +SKIP
    >>> result.to_dict()["runs"][2]["costs"][0]  # doctest: +SKIP
    0.883053746341976
    """
    iterations = check_positive_int(iterations, name="iterations")
    learning_rate = check_in_range(learning_rate, name="learning_rate", low=0.0, high=math.inf, low_open=True)
    record_every = check_positive_int(record_every, name="record_every")
    # The course records every 1000 iterations; a shorter run still records its last iteration, so the table shows
    # how far the cost moved rather than the initial cost twice.
    record_every = min(record_every, max(1, iterations - 1))
    (X_train, y_train), (X_test, y_test) = data.course_circles()
    network = Network(SIZES, hidden="relu", output="sigmoid")
    runs = []
    for name, scheme in SCHEMES.items():
        params = network.init(np.random.RandomState(3), scheme)
        history = network.fit(
            params,
            X_train,
            y_train,
            learning_rate=learning_rate,
            iterations=iterations,
            record_every=record_every,
        )
        runs.append(
            SchemeRun(
                scheme=name,
                iterations=history.iterations,
                costs=history.costs,
                train_accuracy=network.accuracy(history.params, X_train, y_train),
                test_accuracy=network.accuracy(history.params, X_test, y_test),
                params=history.params,
            )
        )
    return InitSchemesResult(runs, network, (X_train, y_train), (X_test, y_test))
