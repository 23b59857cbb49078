"""Why normalize inputs: gradient descent on features whose scales differ 1000x, with and without standardizing.

Linear regression with the mean squared error ``J(w, b) = 1/(2m) ||X w + b - y||^2`` is a quadratic bowl whose
Hessian is ``A^T A / m`` with ``A = [X, 1]``. Gradient descent with a fixed step is stable only below
``2 / lambda_max`` and needs about ``kappa = lambda_max / lambda_min`` steps per e-fold of the slowest direction.
Unnormalized, a feature 1000x larger makes ``lambda_max`` about 1e6 times larger: the largest stable learning rate
collapses and the bowl becomes a long narrow valley (elongated contours). Standardized (with
:class:`preflight.Standardizer`), the bowl is round, ``kappa`` is near 1, and a few steps suffice.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.figures import new_figure, save_figure
from preflight._util.text import Table
from preflight._util.validation import check_in_range, check_positive_int
from preflight.experiments.result import ResultView
from preflight.normalize.standardizer import Standardizer

__all__ = ["SUMMARY", "NormalizationResult", "Quadratic", "Run", "add_arguments", "run"]

SUMMARY = "Gradient descent with features 1000x apart in scale, raw vs standardized: stable step, iterations."
F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Quadratic:
    """The mean squared error of linear regression written as ``1/2 t^T H t - g^T t + c`` in ``t = (w, b)``."""

    hessian: F64
    linear: F64
    constant: float

    @classmethod
    def from_data(cls, X: F64, y: F64) -> Quadratic:
        """``H = A^T A / m``, ``g = A^T y / m``, ``c = y^T y / (2 m)`` with ``A = [X, 1]``."""
        A = np.column_stack([X, np.ones(len(X))])
        m = len(X)
        return cls(A.T @ A / m, A.T @ y / m, float(y @ y) / (2 * m))

    def cost(self, theta: F64) -> float:
        """J at ``theta`` (equal to the data formula, by algebra); inf once gradient descent has diverged."""
        with np.errstate(over="ignore", invalid="ignore"):
            return float(0.5 * theta @ self.hessian @ theta - self.linear @ theta + self.constant)

    @property
    def minimizer(self) -> F64:
        return np.asarray(np.linalg.solve(self.hessian, self.linear), dtype=np.float64)

    @property
    def eigenvalues(self) -> F64:
        return np.asarray(np.linalg.eigvalsh(self.hessian), dtype=np.float64)

    def descend(self, learning_rate: float, iterations: int, record: bool = False) -> tuple[F64, list[F64]]:
        """Gradient descent from zero; returns the last point and, with ``record``, every point on the way."""
        theta = np.zeros(len(self.linear))
        path = [theta]
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(iterations):
                theta = theta - learning_rate * (self.hessian @ theta - self.linear)
                if record:
                    path.append(theta)
                if not np.isfinite(theta).all():
                    break
        return theta, path


@dataclass(frozen=True)
class Run:
    """One row of the table: the same problem on raw or standardized inputs."""

    inputs: str
    feature_std: list[float]
    condition_number: float
    theory_learning_rate: float
    stable_learning_rate: float
    learning_rate: float
    iterations_to_target: int | None
    excess_cost_at_end: float  # (J - J*) at the end over (J - J*) at the start
    costs: list[float] = field(repr=False)
    iterations: list[int] = field(repr=False)
    problem: Quadratic = field(repr=False)


@dataclass(frozen=True, repr=False)
class NormalizationResult(ResultView):
    """Both runs and the settings that produced them."""

    runs: list[Run]
    target: float
    max_iterations: int

    def to_dict(self) -> dict[str, Any]:
        """The settings and one object per run (no cost history)."""
        keys = ("inputs", "feature_std", "condition_number", "theory_learning_rate", "stable_learning_rate")
        more = ("learning_rate", "iterations_to_target", "excess_cost_at_end")
        runs = [{k: getattr(r, k) for k in keys + more} for r in self.runs]
        return {"target": self.target, "max_iterations": self.max_iterations, "runs": runs}

    def headline(self) -> str:
        def took(r: Run) -> str:
            reached = r.iterations_to_target
            return f"{r.inputs} in {reached}" if reached is not None else f"{r.inputs} not in {self.max_iterations}"

        return f"excess cost down to {self.target:g} of its start: " + ", ".join(took(r) for r in self.runs)

    def tables(self) -> list[Table]:
        rows = [
            [
                r.inputs,
                " / ".join(f"{s:.3g}" for s in r.feature_std),
                r.condition_number,
                r.theory_learning_rate,
                r.stable_learning_rate,
                r.iterations_to_target if r.iterations_to_target is not None else f"> {self.max_iterations}",
                r.excess_cost_at_end,
            ]
            for r in self.runs
        ]
        headers = ["inputs", "feature std", "kappa", "2/lambda_max", "largest stable lr", "iterations", "excess left"]
        title = (
            f"Gradient descent on linear regression, learning rate 0.9 x the largest stable one, until the excess "
            f"cost J - J* falls below {self.target:g} of its start"
        )
        return [Table(headers, rows, title=title)]

    def figure(self) -> Any:
        """Contours of the cost over (w1, w2) with the first descent steps, raw and standardized, and the descent."""
        fig = new_figure(figsize=(15, 4.6), layout="constrained")
        axes = fig.subplots(1, 3)
        for ax, r in zip(axes[:2], self.runs, strict=True):
            _contours(ax, r)
        for r in self.runs:
            axes[2].plot(np.add(r.iterations, 1), np.maximum(r.costs, 1e-300), label=r.inputs)
        axes[2].set(xlabel="iteration + 1", ylabel="excess cost J - J*", yscale="log", xscale="log")
        axes[2].set_title("gradient descent")
        axes[2].legend()
        return fig

    def plot(self, directory: Path) -> list[Path]:
        """``normalization.png``: the figure of :meth:`figure`."""
        return [save_figure(self.figure(), Path(directory) / "normalization.png")]


#: Descent steps drawn on the contours: enough to see the zig-zag across the valley die out.
CONTOUR_STEPS = 40


def _contours(ax: Any, r: Run) -> None:
    """Contours of J over (w1, w2) at the bias the descent has reached, with its first steps.

    Each axis spans the descent path and the minimizer, padded: with equal axes a 1000x valley is a line and the
    path a dot. The slice is taken at the path's last bias, so the path lies on the surface drawn.
    """
    _, path = r.problem.descend(r.learning_rate, CONTOUR_STEPS, record=True)
    points = np.array(path)
    best = r.problem.minimizer
    spans = []
    for k in (0, 1):
        low = min(points[:, k].min(), best[k])
        high = max(points[:, k].max(), best[k])
        pad = 0.15 * (high - low) if high > low else max(abs(high), 1.0)
        spans.append(np.linspace(low - pad, high + pad, 201))
    g1, g2 = np.meshgrid(*spans)
    thetas = np.stack([g1.ravel(), g2.ravel(), np.full(g1.size, points[-1, 2])], axis=1)
    h = r.problem.hessian
    costs = 0.5 * np.einsum("ij,jk,ik->i", thetas, h, thetas) - thetas @ r.problem.linear + r.problem.constant
    excess = (costs - costs.min()).reshape(g1.shape)
    levels = np.geomspace(max(excess.max(), 1e-12) * 1e-4, excess.max(), 12)
    ax.contour(g1, g2, excess, levels=levels, cmap="viridis", linewidths=0.9)
    ax.plot(points[:, 0], points[:, 1], ".-", color="crimson", lw=0.9, ms=4, label=f"{CONTOUR_STEPS} descent steps")
    ax.plot(points[:1, 0], points[:1, 1], "o", color="black", ms=5, label="start (0, 0)")
    ratio = (spans[1][-1] - spans[1][0]) / (spans[0][-1] - spans[0][0])
    stretched = ratio < 0.2 or ratio > 5
    ax.set(xlabel="w1", ylabel="w2" + (f" (axis stretched {1 / ratio:.3g}x)" if stretched else ""))
    ax.set_title(f"{r.inputs}: kappa = {r.condition_number:.3g}")
    if not stretched:
        ax.set_aspect("equal")
    ax.legend(loc="best", fontsize=8)


def largest_stable_learning_rate(problem: Quadratic, *, iterations: int = 2000, steps: int = 40) -> float:
    """Bisection on the learning rate, measured: stable when the gradient still shrinks late in the descent.

    The gradient ``H e`` weights the error by the curvature, so the direction of the largest eigenvalue, the one
    that diverges first, dominates it: just above ``2 / lambda_max`` its norm grows from the middle of the run to
    its end even while the cost is still below where it started (a cost test passed 1.901 for a limit of 1.898).

    Examples
    --------
    >>> q = Quadratic(np.diag([4.0, 1.0]), np.ones(2), 0.0)
    >>> round(largest_stable_learning_rate(q), 4)  # 2 / lambda_max
    0.5
    """
    low, high = 0.0, 4.0 / float(np.trace(problem.hessian)) * len(problem.linear)
    for _ in range(steps):
        middle = 0.5 * (low + high)
        _, path = problem.descend(middle, iterations, record=True)
        middle_gradient = problem.hessian @ path[len(path) // 2] - problem.linear
        last_gradient = problem.hessian @ path[-1] - problem.linear
        with np.errstate(over="ignore", invalid="ignore"):
            stable = bool(
                np.isfinite(path[-1]).all() and np.linalg.norm(last_gradient) <= np.linalg.norm(middle_gradient)
            )
        low, high = (middle, high) if stable else (low, middle)
    return low


def _run(name: str, X: F64, y: F64, *, target: float, max_iterations: int) -> Run:
    problem = Quadratic.from_data(X, y)
    eig = problem.eigenvalues
    stable = largest_stable_learning_rate(problem)
    rate = 0.9 * stable
    best = problem.cost(problem.minimizer)
    theta = np.zeros(len(problem.linear))
    first_excess = problem.cost(theta) - best
    costs, recorded, reached = [first_excess], [0], None
    for iteration in range(1, max_iterations + 1):
        theta = theta - rate * (problem.hessian @ theta - problem.linear)
        excess = problem.cost(theta) - best
        if iteration <= 1000 or iteration % 100 == 0:
            costs.append(excess)
            recorded.append(iteration)
        if excess <= target * first_excess:
            reached = iteration
            break
    return Run(
        inputs=name,
        feature_std=[float(s) for s in X.std(axis=0)],
        condition_number=float(eig[-1] / eig[0]),
        theory_learning_rate=float(2.0 / eig[-1]),
        stable_learning_rate=stable,
        learning_rate=rate,
        iterations_to_target=reached,
        excess_cost_at_end=float(excess / first_excess),
        costs=costs,
        iterations=recorded,
        problem=problem,
    )


def make_data(samples: int, scale_ratio: float, seed: int) -> tuple[F64, F64]:
    """Two features, N(0, 1) and N(0, scale_ratio^2) shifted by 3 x scale_ratio; y linear in both, plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, 2)) * [1.0, scale_ratio] + [0.0, 3.0 * scale_ratio]
    y = 2.0 * X[:, 0] + 3.0 / scale_ratio * X[:, 1] + 1.0 + 0.1 * rng.standard_normal(samples)
    return X, y


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options."""
    parser.add_argument("--samples", type=int, default=200, help="training samples (default 200)")
    parser.add_argument("--scale-ratio", type=float, default=1000.0, help="scale of x2 over x1 (default 1000)")
    parser.add_argument("--max-iterations", type=int, default=100_000, help="give up after (default 100000)")
    parser.add_argument("--target", type=float, default=1e-3, help="excess cost to reach, relative (default 1e-3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(
    *,
    samples: int = 200,
    scale_ratio: float = 1000.0,
    max_iterations: int = 100_000,
    target: float = 1e-3,
    seed: int = 0,
) -> NormalizationResult:
    """Fit the same regression by gradient descent on raw and on standardized inputs.

    Examples
    --------
    >>> result = run(max_iterations=2000)
    >>> [r.iterations_to_target is not None for r in result.runs]
    [False, True]
    """
    samples = check_positive_int(samples, name="samples", minimum=3)
    scale_ratio = check_in_range(scale_ratio, name="scale_ratio", low=1.0, high=1e6)
    max_iterations = check_positive_int(max_iterations, name="max_iterations")
    target = check_in_range(target, name="target", low=0.0, high=1.0, low_open=True, high_open=True)
    X, y = make_data(samples, scale_ratio, seed)
    runs = [
        _run("raw", X, y, target=target, max_iterations=max_iterations),
        _run("standardized", Standardizer().fit_transform(X), y, target=target, max_iterations=max_iterations),
    ]
    return NormalizationResult(runs, target, max_iterations)
