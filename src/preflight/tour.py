"""The tour: every part of preflight run on real and generated data, written up as a report people look at.

``run_tour(output)`` runs each section in turn (showing progress on stderr), writes the PNG figures, a
self-contained ``report.html`` and ``summary.json`` into ``output``, and returns the :class:`Tour`.

Each section states its lessons as checks on what it measured (``Tour.lessons``): He initialization beats zeros
and randn x 10, He trains the deep ReLU network that LeCun's 1/n leaves stuck, standardized inputs converge in
fewer iterations. ``--quick`` shortens the runs but keeps every lesson true (``tests/test_tour.py`` asserts them in
both modes).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from preflight._util import html
from preflight._util import jsonsafe as strict_json
from preflight._util.blas import one_blas_thread
from preflight._util.files import atomic_write_text
from preflight._util.optional import require
from preflight.experiments import load
from preflight.report.course_section import course_section
from preflight.report.html import Finding, Section, TourSection, render_findings, render_html
from preflight.report.jax_section import jax_installed, jax_section

__all__ = ["SECTIONS", "Tour", "TourSection", "run_tour"]


@dataclass(frozen=True, repr=False)
class Tour:
    """The sections of the tour and where its files went."""

    sections: list[TourSection]
    output: Path
    seconds: float
    quick: bool = False

    @property
    def lessons(self) -> dict[str, bool]:
        """Each lesson the tour teaches and whether this run bore it out."""
        return {name: held for s in self.sections for name, held in s.lessons.items()}

    @property
    def findings(self) -> list[Finding]:
        """Every demonstration of every section."""
        return [f for s in self.sections for f in s.findings]

    def to_dict(self) -> dict[str, Any]:
        """The summary: per section its figures, findings and numbers; the lessons (also written as summary.json)."""
        return {
            "seconds": round(self.seconds, 2),
            "quick": self.quick,
            "report": str(self.output / "report.html"),
            "lessons": self.lessons,
            "sections": {
                s.key: {
                    **s.summary,
                    "findings": [{**f.__dict__, "tone": f.colour} for f in s.findings],
                    "figures": [p.name for p in s.figures],
                }
                for s in self.sections
            },
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """:meth:`to_dict` as strict JSON text."""
        return strict_json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        blocks = [f"== {s.title} ==\n{s.text}" for s in self.sections]
        blocks.append(f"Report written to {self.output / 'report.html'} ({self.seconds:.1f} s)")
        return "\n\n".join(blocks)

    def __repr__(self) -> str:
        held = sum(self.lessons.values())
        expected = sum(f.expected for f in self.findings)
        return (
            f"<Tour{' --quick' if self.quick else ''}: {len(self.sections)} sections, {held} of {len(self.lessons)} "
            f"lessons held, {expected} of {len(self.findings)} demonstrations as expected, {self.seconds:.1f} s; "
            f"report at {self.output / 'report.html'}>"
        )

    def _repr_html_(self) -> str:
        """Per section its findings; the text and figures folded (the whole report is report.html)."""
        body = []
        for s in self.sections:
            pictures = "".join(html.png_img(p.read_bytes(), alt=p.stem) for p in s.figures if p.exists())
            body += [
                f'<h4 style="margin:.8em 0 .2em">{html.escape(s.title)}</h4>',
                render_findings(s.findings),
                html.details("tables", html.preformatted(s.text)),
                html.details(f"figures ({len(s.figures)})", pictures) if s.figures else "",
            ]
        held = all(self.lessons.values())
        status = html.badge("every lesson held" if held else "a lesson failed", "good" if held else "bad")
        return html.panel("Tour", status, body, subtitle=f"{self.output / 'report.html'}, {self.seconds:.1f} s")


def _accuracy_tone(accuracy: float) -> html.Tone:
    return "good" if accuracy >= 0.9 else "warn" if accuracy >= 0.7 else "bad"


#: Iterations of the course's initialization run: 15,000 as in the course; 8,000 in a quick run, where He already
#: leads (train / test accuracy 0.97 / 0.96 against randn x 10's 0.82 / 0.85); at 2,000 it did not (0.58 / 0.62).
INIT_ITERATIONS = {False: 15000, True: 8000}


def _initialization(quick: bool, figures: Path) -> TourSection:
    result = load("init-schemes").run(iterations=INIT_ITERATIONS[quick], record_every=1000)
    runs = {r.scheme: r for r in result.runs}
    he, zeros, large = runs["He"], runs["zeros"], runs["randn x 10"]
    others = (zeros, large)
    he_wins = all(
        he.train_accuracy > r.train_accuracy and he.test_accuracy > r.test_accuracy and he.costs[-1] < r.costs[-1]
        for r in others
    )

    def scores(r: Any) -> str:
        return f"cost {r.costs[-1]:.3g}, accuracy {r.train_accuracy:.2f} train / {r.test_accuracy:.2f} test"

    return TourSection(
        key="initialization",
        title="Initialization: the course's table",
        intro="The same [2, 10, 5, 1] ReLU network on the course's circles data, started three ways. Zeros never "
        "break symmetry, huge random weights saturate the output and learn slowly, He initialization learns.",
        text=str(result),
        figures=result.plot(figures),
        summary={"table": result.to_dict()["runs"]},
        findings=[
            Finding(
                "zeros", f"stuck: {scores(zeros)}", zeros.train_accuracy == 0.5, "stuck at log 2, accuracy 0.5", "bad"
            ),
            Finding("randn x 10", scores(large), he_wins, "behind He", _accuracy_tone(large.test_accuracy)),
            Finding("He", scores(he), he_wins, "ahead of both", _accuracy_tone(he.test_accuracy)),
        ],
        lessons={"He beats zeros and randn x 10": he_wins},
    )


def _normalization(quick: bool, figures: Path) -> TourSection:
    result = load("normalization").run(max_iterations=5000 if quick else 100_000)
    raw, standardized = result.runs
    fewer = standardized.iterations_to_target is not None and (
        raw.iterations_to_target is None or standardized.iterations_to_target < raw.iterations_to_target
    )

    def outcome(r: Any) -> tuple[str, html.Tone]:
        if r.iterations_to_target is None:
            return f"not converged in {result.max_iterations} iterations", "bad"
        return f"converged in {r.iterations_to_target} iterations", "good"

    return TourSection(
        key="normalization",
        title="Normalizing inputs",
        intro="Two features whose scales differ by 1000x make the cost surface a long narrow valley: gradient "
        "descent must take tiny steps, zig-zags across the valley and crawls along it. Standardizing with the "
        "training set's mean and standard deviation makes the surface round.",
        text=str(result),
        figures=result.plot(figures),
        summary={"table": result.to_dict()["runs"]},
        findings=[
            Finding("raw features", outcome(raw)[0], fewer, "slower than standardized", outcome(raw)[1]),
            Finding("standardized", outcome(standardized)[0], fewer, "faster than raw", outcome(standardized)[1]),
        ],
        lessons={"standardized inputs converge in fewer iterations": fewer},
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


def _bug_outcome(worst: str | None, hints: tuple[str, ...] | list[str]) -> str:
    """ "bug caught in W2: analytic = 2.00 x numeric", the tensor named once even where the hint names it too."""
    hint = next(iter(hints), "")
    if worst and hint.startswith(f"{worst}: "):
        hint = hint[len(worst) + 2 :]
    return f"bug caught in {worst}" + (f": {hint}" if hint else "")


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

    def verdict(report: Any) -> str:
        return "passed" if report.passed else "failed"

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
        findings=[
            Finding("correct network, float64", verdict(correct), correct.passed, "passes"),
            Finding(
                "planted bug (dW2 doubled)",
                _bug_outcome(buggy.worst, buggy.hints) if not buggy.passed else "passed",
                not buggy.passed and buggy.worst == "W2",
                "caught in W2",
                "bad",
            ),
            Finding("correct network, float32", verdict(single), single.passed, "passes"),
        ],
        lessons={"the check passes correct backprop and names the planted bug": correct.passed and not buggy.passed},
    )


#: What mean-field theory predicts for the depth experiment's schemes (any other scheme: healthy).
EXPECTED_DEPTH_VERDICTS = {"tanh, N(0, 0.01^2)": "vanishing", "tanh, N(0, 1)": "saturated", "ReLU, 1/n": "vanishing"}
#: "Trained": the cost of the 30-layer ReLU net on digits ends below this (from ln 10 = 2.30 at chance).
TRAINED_COST = 0.5


def _depth(quick: bool, figures: Path) -> TourSection:
    result = load("depth").run(quick=quick)
    verdicts = {row.scheme: row.verdict for row in result.schemes}
    training = {run.scheme: run for run in result.training}
    lecun, he = training["LeCun 1/n"], training["He 2/n"]
    he_trains = he.costs[-1] < min(TRAINED_COST, lecun.costs[-1])
    depth_findings = [
        Finding(name, verdict, verdict == EXPECTED_DEPTH_VERDICTS.get(name, "healthy"), "theory: " + expected)
        for name, verdict in verdicts.items()
        for expected in [EXPECTED_DEPTH_VERDICTS.get(name, "healthy")]
    ]
    steps = he.iterations[-1]
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
            "training_accuracy": {name: [run.train_accuracy, run.test_accuracy] for name, run in training.items()},
        },
        findings=[
            *depth_findings,
            Finding(
                f"30 ReLU layers on digits, LeCun 1/n, {steps} steps",
                f"{'stuck at ' if lecun.costs[-1] > TRAINED_COST else ''}cost {lecun.costs[-1]:.3f} "
                f"(chance: ln 10 = {math.log(10):.3f})",
                lecun.costs[-1] > he.costs[-1],
                "stuck, behind He",
                "bad" if lecun.costs[-1] > TRAINED_COST else "good",
            ),
            Finding(
                f"30 ReLU layers on digits, He 2/n, {steps} steps",
                f"cost {he.costs[-1]:.3g}, accuracy {he.train_accuracy:.2f} train / {he.test_accuracy:.2f} test",
                he_trains,
                f"trains (cost below {TRAINED_COST})",
                "good" if he.costs[-1] < TRAINED_COST else "bad",
            ),
        ],
        lessons={
            "mean-field theory predicts every verdict": all(f.expected for f in depth_findings),
            "He trains the deep ReLU network, LeCun's 1/n does not": he_trains,
        },
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
    scheme = before.recommendation.scheme
    return TourSection(
        key="diagnostics",
        title="Diagnosing a network that won't train",
        intro=f"A {net.depth}-layer tanh network on digits, initialized with N(0, 1) weights, then re-initialized with "
        "the scheme the diagnosis recommends. Per layer: forward and backward statistics, the mean-field gain and "
        "a verdict. The last layer is the logits (no activation): its std is that of the logits themselves, "
        "about sqrt(fan_in) x the weights' std for saturated inputs, and plays no part in the verdict.",
        text=f"N(0, 1) initialization:\n{before}\n\nRecommended ({scheme}):\n{after}",
        figures=plots,
        summary={"before": before.verdict, "recommended": scheme, "after": after.verdict},
        findings=[
            Finding("N(0, 1) weights", before.verdict, before.verdict != "healthy", "a problem found"),
            Finding(f"re-initialized with {scheme}", after.verdict, after.verdict == "healthy", "healthy"),
        ],
        lessons={"the recommended init makes the network healthy": after.verdict == "healthy"},
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
        summary={"table": result.to_dict()},
        findings=[
            Finding(
                "learning rate x200 for 20 steps",
                named.message if named is not None else "no dead layer found",
                named is not None and result.spike[0] <= named.began <= result.spike[1] + 20,
                "dead layers named at the spike",
                "bad" if named is not None else "neutral",
            ),
            Finding(
                "the same jump 10x lower",
                f"{'healthy' if fixed.report.healthy else 'verdicts found'}, accuracy {fixed.accuracy:.3f} "
                f"(spiked: {spiked.accuracy:.3f})",
                fixed.report.healthy and fixed.accuracy > spiked.accuracy,
                "stays healthy",
                "good" if fixed.report.healthy else "bad",
            ),
        ],
        lessons={
            "the monitor names the dead layers at the learning-rate spike": named is not None
            and result.spike[0] <= named.began <= result.spike[1] + 20,
            "a 10x lower jump stays healthy": fixed.report.healthy and fixed.accuracy > spiked.accuracy,
        },
    )


#: The tour's sections, in order (the JAX one where jax is installed).
SECTIONS: list[Callable[[bool, Path], TourSection]] = [
    _normalization,
    _initialization,
    _depth,
    _diagnostics,
    _training_health,
    _gradient_checking,
    course_section,
    *([jax_section] if jax_installed() else []),
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
    tour = Tour(sections, output, time.perf_counter() - start, quick)
    page = render_html(
        "preflight tour",
        [Section(s.title, s.intro, s.text, s.figures, s.findings) for s in sections],
        footer=f"Generated by preflight tour{' --quick' if quick else ''} in {tour.seconds:.1f} s.",
    )
    atomic_write_text(output / "report.html", page)
    atomic_write_text(output / "summary.json", tour.to_json(indent=2))
    return tour
