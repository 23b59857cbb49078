"""Signal propagation with depth: why the initialization's variance has to fit the activation.

Three parts, each measured with :func:`preflight.propagation.analyze`:

1. 50 hidden layers of width 512, inputs N(0, 1), a softmax head on random labels: the post-activation std at
   layers 1, 10 and 50 and the backward signal ``||dL/dZ_1|| / ||dL/dZ_50||`` for tanh with N(0, 0.01^2), N(0, 1)
   and LeCun, ReLU with 1/n and He (2/n), and orthogonal weights.
2. A deep linear network with ``W = a I``: the signal is multiplied by exactly ``a`` per layer, so by ``a^L``.
3. A 30-layer ReLU network trained on the digits (standardized per feature with the training mean and std) from
   LeCun (1/n) and from He (2/n) initialization, same seed and schedule: the first stalls at ln 10, the second
   learns (He et al. 2015, figure 3).
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from preflight import data, init, propagation
from preflight._util.figures import new_figure, save_figure
from preflight._util.text import Table
from preflight._util.validation import check_choice, check_in_range, check_positive_int
from preflight.experiments.result import ResultView
from preflight.nn.network import Network

__all__ = ["CASES", "SUMMARY", "DepthResult", "LinearRow", "SchemeRow", "TrainingRun", "add_arguments", "run"]

SUMMARY = "Depth: activations and gradients through 50 layers by init scheme, W = aI, and a 30-layer ReLU net."
#: Label -> (hidden activation, weight initializer) of the 50-layer networks.
CASES: dict[str, tuple[str, init.Initializer]] = {
    "tanh, N(0, 0.01^2)": ("tanh", init.normal(0.01)),
    "tanh, N(0, 1)": ("tanh", init.normal(1.0)),
    "tanh, LeCun 1/n": ("tanh", init.lecun_normal),
    "ReLU, 1/n": ("relu", init.lecun_normal),
    "ReLU, He 2/n": ("relu", init.he_normal),
    "tanh, orthogonal": ("tanh", init.orthogonal(1.0)),
    "ReLU, orthogonal x sqrt 2": ("relu", init.orthogonal(math.sqrt(2.0))),
}
LINEAR_SCALES = (0.9, 0.95, 0.99, 1.0, 1.01, 1.05, 1.1)
TRAIN_SCHEMES = {"LeCun 1/n": init.lecun_normal, "He 2/n": init.he_normal}
CLASSES = 10
QUICK_ITERATIONS = 800


@dataclass(frozen=True)
class SchemeRow:
    """One 50-layer network: std per hidden layer, backward signal, verdict."""

    scheme: str
    activation: str
    std: list[float]
    delta_norm: list[float]
    gradient_ratio: float
    chi_measured: float
    chi_predicted: float
    verdict: str


@dataclass(frozen=True)
class LinearRow:
    """The deep linear network W = a I."""

    scale: float
    depth: int
    output_gain: float
    gradient_ratio: float

    @property
    def predicted(self) -> float:
        """a^L."""
        return float(self.scale**self.depth)


@dataclass(frozen=True)
class TrainingRun:
    """Training cost (on the whole training set) along the way, and accuracies."""

    scheme: str
    iterations: list[int]
    costs: list[float]
    train_accuracy: float
    test_accuracy: float


#: Line styles of the schemes' curves: LeCun and orthogonal tanh coincide within a few percent, so every scheme gets
#: its own dash pattern and marker (markers staggered along the line so that coinciding curves stay apart).
STYLES = [("-", "o"), ("--", "s"), ("-", "^"), (":", "v"), ("-.", "D"), ("--", "x"), (":", "P")]


@dataclass(frozen=True, repr=False)
class DepthResult(ResultView):
    """The three tables; ``options`` records the sizes that produced them."""

    schemes: list[SchemeRow]
    linear: list[LinearRow]
    training: list[TrainingRun]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def probe_layers(self) -> list[int]:
        """The hidden layers whose std the table shows: 1, 10 and the last."""
        depth = self.options["depth"]
        return sorted({1, min(10, depth), depth})

    def to_dict(self) -> dict[str, Any]:
        """Objects for the three parts (per-layer lists included) and the options."""
        return {
            "options": self.options,
            "schemes": [row.__dict__ for row in self.schemes],
            "linear": [{**row.__dict__, "predicted": row.predicted} for row in self.linear],
            "training": [run.__dict__ for run in self.training],
        }

    def headline(self) -> str:
        verdicts = Counter(r.verdict for r in self.schemes)
        parts = [
            f"{len(self.schemes)} schemes through {self.options['depth']} layers ("
            + ", ".join(f"{v} {n}" for v, n in verdicts.items())
            + ")"
        ]
        if self.training:
            ends = ", ".join(f"{t.scheme} {t.costs[-1]:.3g}" for t in self.training)
            parts.append(f"{self.options['train_depth']}-layer ReLU on digits, final cost: {ends}")
        return "; ".join(parts)

    def tables(self) -> list[Table]:
        o, probes = self.options, self.probe_layers
        headers = ["scheme", *[f"std @ {p}" for p in probes], "|dZ_1|/|dZ_last|", "chi", "chi (MF)", "verdict"]

        def gains(value: float) -> float | str:
            # chi is a gain between consecutive hidden layers: with one hidden layer there is none to measure.
            return "n/a" if math.isnan(value) else value

        rows = [
            [
                r.scheme,
                *[r.std[p - 1] for p in probes],
                r.gradient_ratio,
                gains(r.chi_measured),
                gains(r.chi_predicted),
                r.verdict,
            ]
            for r in self.schemes
        ]
        tables = [
            Table(
                headers,
                rows,
                title=f"{o['depth']} hidden layers of width {o['width']}, batch {o['batch']} of N(0, 1) inputs",
                notes=["chi: geometric mean per-layer gain (n/a with one hidden layer); MF: mean field"],
            ),
            Table(
                ["a", "rms(Z_L) / rms(X)", "a^L", "|dZ_1|/|dZ_L|"],
                [[r.scale, r.output_gain, r.predicted, r.gradient_ratio] for r in self.linear],
                title=f"Deep linear network, W = a I, L = {o['linear_depth']} layers of width {o['linear_width']}",
            ),
        ]
        if self.training:
            tables.append(
                Table(
                    ["init", "cost at 0", f"cost at {self.training[0].iterations[-1]}", "train acc", "test acc"],
                    [[t.scheme, t.costs[0], t.costs[-1], t.train_accuracy, t.test_accuracy] for t in self.training],
                    title=f"{o['train_depth']}-layer ReLU network (width {o['train_width']}) on digits, "
                    f"SGD lr {o['learning_rate']}, batch {o['batch_size']}",
                )
            )
        return tables

    def figure(self) -> Any:
        """The signal per layer, one styled line per scheme (``depth_signal.png``): forward on a log scale, forward
        again on a linear scale from 0 to 1.2 (where the healthy schemes sit, apart from each other), backward."""
        fig = new_figure(figsize=(16, 5.2), layout="constrained")
        forward, zoom, backward = fig.subplots(1, 3)
        for i, r in enumerate(self.schemes):
            dash, marker = STYLES[i % len(STYLES)]
            style = {"linestyle": dash, "marker": marker, "ms": 4, "label": r.scheme, "markevery": (i % 5, 5)}
            hidden = range(1, len(r.std) + 1)
            forward.plot(hidden, np.maximum(r.std, 1e-300), **style)
            zoom.plot(hidden, r.std, **style)
            backward.plot(range(1, len(r.delta_norm) + 1), np.maximum(r.delta_norm, 1e-300), **style)
        forward.set(yscale="log", xlabel="hidden layer l", ylabel="std of the activations A_l", title="forward")
        zoom.set(ylim=(0, 1.2), xlabel="hidden layer l", ylabel="std of A_l (linear scale)", title="forward, 0 to 1.2")
        backward.set(yscale="log", xlabel="layer l", ylabel="||dL/dZ_l||", title="backward")
        fig.legend(*forward.get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=9)
        return fig

    def plot(self, directory: Path) -> list[Path]:
        """``depth_signal.png`` (std and |dL/dZ| per layer), ``depth_linear.png``, ``depth_training.png``."""
        paths = [save_figure(self.figure(), Path(directory) / "depth_signal.png")]
        fig = new_figure(figsize=(6, 4), layout="constrained")
        ax = fig.subplots()
        for row in self.linear:
            ax.plot(row.scale ** np.arange(row.depth + 1), label=f"a = {row.scale}")
            ax.plot([row.depth], [row.output_gain], "k.")
        ax.set(yscale="log", xlabel="layer l", ylabel="a^l (dots: measured at L)", title="W = a I")
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, Path(directory) / "depth_linear.png"))
        if self.training:
            fig = new_figure(figsize=(6, 4), layout="constrained")
            ax = fig.subplots()
            for t in self.training:
                ax.plot(t.iterations, t.costs, label=f"{t.scheme} (test acc {t.test_accuracy:.2f})")
            ax.set(xlabel="iteration", ylabel="training cost", title=f"{self.options['train_depth']}-layer ReLU")
            ax.legend()
            paths.append(save_figure(fig, Path(directory) / "depth_training.png"))
        return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options; ``--quick`` shrinks everything so the whole run takes seconds."""
    parser.add_argument("--quick", action="store_true", help="small sizes (width 128, 800 training steps)")
    parser.add_argument("--depth", type=int, default=None, help="hidden layers of the probe networks (50)")
    parser.add_argument("--width", type=int, default=None, help="width of the probe networks (512)")
    parser.add_argument("--batch", type=int, default=None, help="batch of random inputs (256)")
    parser.add_argument("--iterations", type=int, default=None, help="training steps on digits (1500; 0 skips)")
    parser.add_argument("--learning-rate", type=float, default=0.01, help="training step size (0.01)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, weights and batches (0)")


def run(
    *,
    quick: bool = False,
    depth: int | None = None,
    width: int | None = None,
    batch: int | None = None,
    iterations: int | None = None,
    learning_rate: float = 0.01,
    seed: int = 0,
    cases: Sequence[str] | None = None,
) -> DepthResult:
    """Run the three parts (see the module docstring); unset sizes take the full or the ``quick`` defaults.

    ``cases`` picks rows of the first table by label (keys of :data:`CASES`; default all of them).

    Examples
    --------
    >>> result = run(quick=True, iterations=0)  # doctest: +SKIP
    >>> result.schemes[4].verdict  # doctest: +SKIP
    'healthy'
    """
    options: dict[str, Any] = {
        "depth": check_positive_int(depth if depth is not None else 50, name="depth"),
        "width": check_positive_int(width if width is not None else (128 if quick else 512), name="width"),
        "batch": check_positive_int(batch if batch is not None else (64 if quick else 256), name="batch", minimum=2),
        # Quick runs keep the lesson: after 800 steps He has trained on every OpenBLAS kernel tried (SkylakeX,
        # Haswell, SandyBridge: cost 0.09 to 0.13, train accuracy 0.96 to 0.98) while LeCun stays at ln 10; after
        # 200 He was still at cost 1.45.
        "iterations": check_positive_int(
            iterations if iterations is not None else (QUICK_ITERATIONS if quick else 1500),
            name="iterations",
            minimum=0,
        ),
        "learning_rate": check_in_range(learning_rate, name="learning_rate", low=0.0, high=math.inf, low_open=True),
        "seed": check_positive_int(seed, name="seed", minimum=0),
        "linear_depth": 50,
        "linear_width": 32,
        "train_depth": 30,
        "train_width": 64,
        "batch_size": 64,
    }
    rng = np.random.default_rng(options["seed"])
    X = rng.standard_normal((options["batch"], options["width"]))
    y = rng.integers(0, CLASSES, options["batch"])
    labels = list(CASES) if cases is None else [check_choice(c, name="cases", allowed=CASES) for c in cases]
    schemes = [_probe(label, *CASES[label], X, y, options) for label in labels]
    linear = [_linear(a, options) for a in LINEAR_SCALES]
    training = _train(options) if options["iterations"] > 0 else []
    return DepthResult(schemes, linear, training, options)


def _probe(label: str, activation: str, scheme: init.Initializer, X: Any, y: Any, o: dict[str, Any]) -> SchemeRow:
    net = Network([o["width"]] * (o["depth"] + 1) + [CLASSES], hidden=activation, output="softmax")
    report = propagation.analyze(net, net.init(o["seed"] + 1, scheme), X, y, warn=False)
    hidden = report.layers[:-1]
    chis = [(s.chi_measured, s.chi_predicted) for s in hidden[:-1]]
    return SchemeRow(
        scheme=label,
        activation=activation,
        std=[s.std for s in hidden],
        delta_norm=[s.delta_norm for s in report.layers],
        gradient_ratio=_safe_ratio(hidden[0].delta_norm, hidden[-1].delta_norm),
        chi_measured=_geometric_mean([c[0] for c in chis]),
        chi_predicted=_geometric_mean([c[1] for c in chis]),
        verdict=report.verdict,
    )


def _linear(scale: float, o: dict[str, Any]) -> LinearRow:
    depth, width = o["linear_depth"], o["linear_width"]
    net = Network([width] * (depth + 1), hidden="linear", output="linear")
    rng = np.random.default_rng(o["seed"])
    X = rng.standard_normal((16, width))
    report = propagation.analyze(net, net.init(0, init.identity(scale)), X, np.zeros((16, width)), warn=False)
    gain = report.layers[-1].forward_ratio
    return LinearRow(scale, depth, gain, _safe_ratio(report.layers[0].delta_norm, report.layers[-1].delta_norm))


def _train(o: dict[str, Any]) -> list[TrainingRun]:
    X, y = data.digits()
    order = np.random.default_rng(o["seed"]).permutation(len(y))
    test, train = order[:400], order[400:]
    mean, std = X[train].mean(axis=0), X[train].std(axis=0)
    X = (X - mean) / np.where(std > 0, std, 1.0)  # constant (always blank) pixels: std 0, left at 0
    net = Network([X.shape[1]] + [o["train_width"]] * (o["train_depth"] - 1) + [CLASSES], "relu", "softmax")
    every = max(1, o["iterations"] // 30)
    runs = []
    for label, scheme in TRAIN_SCHEMES.items():
        iterations: list[int] = []
        costs: list[float] = []

        def record(iteration: int, params: Any, iterations: list[int] = iterations, costs: list[float] = costs) -> None:
            if iteration % every == 0 or iteration == o["iterations"]:
                iterations.append(iteration)
                costs.append(net.cost(params, X[train], y[train]))

        history = net.fit(
            net.init(o["seed"], scheme),
            X[train],
            y[train],
            learning_rate=o["learning_rate"],
            iterations=o["iterations"],
            batch_size=o["batch_size"],
            rng=o["seed"] + 1,
            record_every=o["iterations"] + 1,
            callbacks=[record],
        )
        runs.append(
            TrainingRun(
                label,
                iterations,
                costs,
                net.accuracy(history.params, X[train], y[train]),
                net.accuracy(history.params, X[test], y[test]),
            )
        )
    return runs


def _safe_ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.inf


def _geometric_mean(values: list[Any]) -> float:
    positive = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return float(np.exp(np.mean(np.log(positive)))) if positive else math.nan
