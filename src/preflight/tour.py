"""The tour: every part of preflight run on real and generated data, written up as a report people look at.

``run_tour(output)`` runs each section in turn (showing progress on stderr), writes the PNG figures, a
self-contained ``report.html`` and ``summary.json`` into ``output``, and returns the :class:`Tour`.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from preflight._util import jsonsafe as strict_json
from preflight._util.blas import one_blas_thread
from preflight._util.files import atomic_write_text
from preflight._util.optional import require
from preflight.experiments import load
from preflight.report.html import Section, render_html

__all__ = ["SECTIONS", "Tour", "TourSection", "run_tour"]


@dataclass(frozen=True)
class TourSection:
    """What one section found: its text and figures, and a JSON summary with its verdicts."""

    key: str
    title: str
    intro: str
    text: str
    figures: list[Path]
    summary: dict[str, Any]
    verdicts: list[tuple[str, bool]] = field(default_factory=list)


@dataclass(frozen=True)
class Tour:
    """The sections of the tour and where its files went."""

    sections: list[TourSection]
    output: Path
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The summary: per section its figures and verdicts (also written as summary.json)."""
        return {
            "seconds": round(self.seconds, 2),
            "report": str(self.output / "report.html"),
            "sections": {s.key: {**s.summary, "figures": [p.name for p in s.figures]} for s in self.sections},
        }

    def __str__(self) -> str:
        blocks = [f"== {s.title} ==\n{s.text}" for s in self.sections]
        blocks.append(f"Report written to {self.output / 'report.html'} ({self.seconds:.1f} s)")
        return "\n\n".join(blocks)


def _initialization(quick: bool, figures: Path) -> TourSection:
    result = load("init-schemes").run(iterations=2000 if quick else 15000, record_every=200 if quick else 1000)
    runs = {r.scheme: r for r in result.runs}
    he, zeros = runs["He"], runs["zeros"]
    return TourSection(
        key="initialization",
        title="Initialization: the course's table",
        intro="The same [2, 10, 5, 1] ReLU network on the course's circles data, started three ways. Zeros never "
        "break symmetry, huge random weights saturate the output, He initialization learns.",
        text=str(result),
        figures=result.plot(figures),
        summary={"table": result.to_json()},
        verdicts=[
            (f"He: train accuracy {he.train_accuracy:.4f}, test {he.test_accuracy:.2f}", he.test_accuracy >= 0.9),
            (f"zeros: stuck at cost {zeros.costs[-1]:.4f} (log 2)", zeros.train_accuracy == 0.5),
        ],
    )


def _normalization(quick: bool, figures: Path) -> TourSection:
    result = load("normalization").run(max_iterations=5000 if quick else 100_000)
    raw, standardized = result.runs
    return TourSection(
        key="normalization",
        title="Normalizing inputs",
        intro="Two features whose scales differ by 1000x make the cost surface a long narrow valley: gradient "
        "descent must take tiny steps and crawls. Standardizing with the training set's mean and standard "
        "deviation makes the surface round.",
        text=str(result),
        figures=result.plot(figures),
        summary={"table": result.to_json()},
        verdicts=[
            (
                f"standardized: target reached in {standardized.iterations_to_target} iterations",
                standardized.iterations_to_target is not None,
            ),
            (
                "raw: "
                + (f"{raw.iterations_to_target} iterations" if raw.iterations_to_target else "target not reached"),
                raw.iterations_to_target is None,
            ),
        ],
    )


def _standardized_digits(rows: int) -> tuple[Any, Any]:
    """The first ``rows`` digits, standardized with statistics of the whole set."""
    from preflight.data import digits
    from preflight.normalize.standardizer import ConstantFeatureWarning, Standardizer

    X, y = digits()
    with warnings.catch_warnings():
        # Digits' border pixels are 0 in every image: constant features, expected here, get scale 1.
        warnings.simplefilter("ignore", ConstantFeatureWarning)
        X = Standardizer().fit_transform(X)
    return X[:rows], y[:rows]


def _gradient_checking(quick: bool, figures: Path) -> TourSection:
    from preflight.nn import Network, gradcheck
    from preflight.nn.bugs import BuggyNetwork

    X, y = _standardized_digits(64)
    sizes = [64, 16 if quick else 32, 10]
    net = Network(sizes, hidden="tanh", output="softmax", l2=1e-3)
    params = net.init(0, "lecun")
    correct = gradcheck(net, params, X, y)
    planted = BuggyNetwork(sizes, hidden="tanh", output="softmax", l2=1e-3, bug="factor-2")
    buggy = gradcheck(planted, params, X, y)
    single = gradcheck(net, {k: v.astype("float32") for k, v in params.items()}, X, y)
    text = "\n\n".join(
        [
            f"A correct network {sizes}, float64:\n{correct}",
            f"The same network with a planted bug (dW2 doubled):\n{buggy}",
            f"The correct network in float32:\n{single}",
        ]
    )
    return TourSection(
        key="gradient_checking",
        title="Gradient checking on digits",
        intro="Every coordinate is perturbed both ways and compared with backprop. The verdict is calibrated to the "
        "rounding noise of the loss, so it holds in float32 too; a failing check names the tensor and the bug.",
        text=text,
        figures=[],
        summary={
            "correct_passed": correct.passed,
            "buggy_passed": buggy.passed,
            "buggy_worst": buggy.worst,
            "buggy_hints": list(buggy.hints),
            "float32_passed": single.passed,
            "float32_difference": single.difference,
        },
        verdicts=[
            (f"correct network: {'passed' if correct.passed else 'FAILED'}", correct.passed),
            (f"planted bug: caught in {buggy.worst}: {'; '.join(buggy.hints)}", not buggy.passed),
            (f"float32: {'passed' if single.passed else 'FAILED'}", single.passed),
        ],
    )


#: What mean-field theory predicts for the depth experiment's schemes (any other scheme: healthy).
EXPECTED_DEPTH_VERDICTS = {"tanh, N(0, 0.01^2)": "vanishing", "tanh, N(0, 1)": "saturated", "ReLU, 1/n": "vanishing"}


def _depth(quick: bool, figures: Path) -> TourSection:
    result = load("depth").run(quick=quick)
    rows = result.to_json()["schemes"]
    verdicts = {row["scheme"]: row["verdict"] for row in rows}
    training = {run.scheme: run for run in result.training}
    lecun, he = training["LeCun 1/n"], training["He 2/n"]
    return TourSection(
        key="depth",
        title="Vanishing and exploding signals with depth",
        intro="Fifty layers: too small weights make the signal vanish, too large ones saturate tanh or explode, "
        "variance 1/n (tanh) or 2/n (ReLU) keeps it steady. A deep linear network with W = aI grows as a^L. A "
        "30-layer ReLU network on digits stalls with LeCun's 1/n and learns with He's 2/n.",
        text=str(result),
        figures=result.plot(figures),
        summary={
            "verdicts": verdicts,
            "expected": EXPECTED_DEPTH_VERDICTS,
            "training": {name: run.costs[-1] for name, run in training.items()},
        },
        verdicts=[
            (
                f"{name}: {verdict} (theory: {EXPECTED_DEPTH_VERDICTS.get(name, 'healthy')})",
                verdict == EXPECTED_DEPTH_VERDICTS.get(name, "healthy"),
            )
            for name, verdict in verdicts.items()
        ]
        + [
            (
                f"digits, 30 ReLU layers: LeCun ends at cost {lecun.costs[-1]:.3f}, He at {he.costs[-1]:.3f}",
                he.costs[-1] < lecun.costs[-1],
            )
        ],
    )


def _diagnostics(quick: bool, figures: Path) -> TourSection:
    from preflight.nn.network import Network
    from preflight.propagation import PropagationWarning, analyze

    X, y = _standardized_digits(256)
    net = Network([64] + [64] * (6 if quick else 12) + [10], hidden="tanh", output="softmax")
    bad = net.init(0, "standard_normal")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PropagationWarning)  # the doubtful layers are the point of this section
        before = analyze(net, bad, X, y)
    after = analyze(net, net.init(0, before.recommendation.scheme), X, y, warn=False)
    plots = [
        p.rename(p.with_name(f"diagnostics_{tag}_{p.name}"))
        for tag, r in (("before", before), ("after", after))
        for p in r.plot(figures)
    ]
    return TourSection(
        key="diagnostics",
        title="Diagnosing a network that won't train",
        intro=f"A {net.depth}-layer tanh network on digits, initialized with N(0, 1) weights, then re-initialized with "
        "the scheme the diagnosis recommends. Per layer: forward and backward statistics, the mean-field gain and "
        "a verdict.",
        text=f"N(0, 1) initialization:\n{before}\n\nRecommended ({before.recommendation.scheme}):\n{after}",
        figures=plots,
        summary={"before": before.verdict, "recommended": before.recommendation.scheme, "after": after.verdict},
        verdicts=[
            (f"N(0, 1): {before.verdict}", before.verdict != "healthy"),
            (f"{before.recommendation.scheme}: {after.verdict}", after.verdict == "healthy"),
        ],
    )


def _training_health(quick: bool, figures: Path) -> TourSection:
    result = load("training-health").run(quick=quick)
    spiked, fixed = result.runs
    dead = [v for v in spiked.report.verdicts if v.verdict == "dead"]
    named = dead[0] if dead else None
    return TourSection(
        key="training_health",
        title="While it trains: a learning rate that kills ReLU units",
        intro=f"A 6-layer ReLU network learns the digits; at step {result.spike[0]} its learning rate jumps from 0.05 "
        "to 10 for 20 steps. The health monitor diagnoses every 20 steps with the thresholds of the one-point "
        "diagnosis and names the layers that died, the step, and the fix. The same run with the jump 10x lower "
        "stays healthy.",
        text=str(result),
        figures=result.plot(figures),
        summary={"table": result.to_json()},
        verdicts=[
            (
                named.message if named is not None else "spiked run: no dead layer found",
                named is not None and result.spike[0] <= named.began <= result.spike[1] + 20,
            ),
            (
                f"fixed run: {'healthy' if fixed.report.healthy else 'verdicts found'}, accuracy {fixed.accuracy:.3f} "
                f"(spiked: {spiked.accuracy:.3f})",
                fixed.report.healthy and fixed.accuracy > spiked.accuracy,
            ),
        ],
    )


#: The tour's sections, in order.
SECTIONS: list[Callable[[bool, Path], TourSection]] = [
    _normalization,
    _initialization,
    _depth,
    _diagnostics,
    _training_health,
    _gradient_checking,
]


def run_tour(output: str | Path = "preflight-report", *, quick: bool = False, progress: TextIO | None = None) -> Tour:
    """Run every section, write figures, report.html and summary.json into ``output``.

    Parameters
    ----------
    output : path
        Folder for the report (created if needed).
    quick : bool
        Shorter training runs and smaller networks (for tests).
    progress : text stream, optional
        Where progress lines go (default: stderr).
    """
    require("sklearn", extra="data", purpose="The tour (its data sets)")
    require("matplotlib", extra="plot", purpose="The tour (its figures)")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output: expected a folder, got the file {str(output)!r}")
    output.mkdir(parents=True, exist_ok=True)
    stream = sys.stderr if progress is None else progress
    start = time.perf_counter()
    sections = []
    # One BLAS thread: the tour's matrices are small, and a multithreaded BLAS on 2 cores ran the depth section
    # 12x slower here (93 s against 7.5 s) whenever anything else was running.
    require("threadpoolctl", extra="data", purpose="The tour")
    with one_blas_thread():
        for number, build in enumerate(SECTIONS, start=1):
            began = time.perf_counter()
            print(f"[{number}/{len(SECTIONS)}] {build.__name__.strip('_')} ...", file=stream, flush=True)
            sections.append(build(quick, output))
            print(f"      done in {time.perf_counter() - began:.1f} s", file=stream, flush=True)
    tour = Tour(sections, output, time.perf_counter() - start)
    page = render_html(
        "preflight tour",
        [Section(s.title, s.intro, s.text, s.figures, s.verdicts) for s in sections],
        footer=f"Generated by preflight tour{' --quick' if quick else ''} in {tour.seconds:.1f} s.",
    )
    atomic_write_text(output / "report.html", page)
    atomic_write_text(output / "summary.json", strict_json.dumps(tour.to_json(), indent=2))
    return tour
