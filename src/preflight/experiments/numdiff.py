"""One- vs two-sided finite differences against the step: truncation O(h) vs O(h^2), and where rounding takes over.

The function is the reference network's cost as a function of each first-layer weight (a [4, 8, 3] tanh / softmax
network on a random batch), evaluated in float64 and in float32; the exact derivative is the float64 backprop at the
same point (the float32 parameters cast up, so both sides see the same, representable, point). Errors are the root
mean square over the 32 weights. Every step is made
representable, ``h = (w + h) - w``, before it is divided by.

Expected: the one-sided error falls like h (slope 1 on log-log axes), the two-sided like h^2 (slope 2), until the
rounding error of the loss, ~eps |f| / h, takes over (slope -1). The best steps sit near ``sqrt(eps)`` and
``cbrt(eps)`` of the dtype: 1.5e-8 and 6e-6 in float64, 3.5e-4 and 4.9e-3 in float32.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from preflight._util.figures import new_figure, save_figure
from preflight._util.text import Table
from preflight._util.validation import check_positive_int
from preflight.experiments.result import ResultView
from preflight.nn.network import Network

__all__ = ["SUMMARY", "NumdiffResult", "add_arguments", "run"]

SUMMARY = "Error of one- vs two-sided finite differences against the step, float64 and float32."
DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Curve:
    """Errors of both formulas over the steps, for one dtype."""

    dtype: str
    steps: list[float]
    forward: list[float]
    central: list[float]
    best_forward: float
    best_central: float
    slope_forward: float  # log-log slope over the truncation regime (large steps)
    slope_central: float


@dataclass(frozen=True, repr=False)
class NumdiffResult(ResultView):
    """Both dtypes' curves and what they were measured on."""

    curves: list[Curve]
    derivative: float
    weight: str
    network: str = field(default="")

    def to_dict(self) -> dict[str, Any]:
        """The curves and what they were measured on."""
        return {
            "weight": self.weight,
            "derivative": self.derivative,
            "network": self.network,
            "curves": [c.__dict__ for c in self.curves],
        }

    def headline(self) -> str:
        best = ", ".join(f"{c.dtype} {c.best_central:.0e}" for c in self.curves)
        return f"best two-sided step: {best}"

    def tables(self) -> list[Table]:
        steps = self.curves[0].steps
        rows = []
        for i, h in enumerate(steps):
            row: list[Any] = [f"{h:.0e}"]
            for c in self.curves:
                row += [c.forward[i], c.central[i]]
            rows.append(row)
        headers = ["step"] + [f"{c.dtype} {kind}" for c in self.curves for kind in ("one-sided", "two-sided")]
        notes = [""]
        for c in self.curves:
            eps = float(np.finfo(c.dtype).eps)
            notes.append(
                f"{c.dtype}: slope one-sided {c.slope_forward:.2f} (O(h)), two-sided {c.slope_central:.2f} (O(h^2)); "
                f"best step one-sided {c.best_forward:.0e} (sqrt(eps) = {eps**0.5:.1e}), "
                f"two-sided {c.best_central:.0e} (cbrt(eps) = {eps ** (1 / 3):.1e})"
            )
        title = f"RMS |finite difference - backprop| over {self.weight}, RMS gradient {self.derivative:.3g}"
        title += f" ({self.network})"
        return [Table(headers, rows, title=title, notes=notes)]

    def figure(self) -> Any:
        """Log-log error curves, one panel per dtype."""
        fig = new_figure(figsize=(5.5 * len(self.curves), 4), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, len(self.curves), sharey=True))
        for ax, c in zip(axes, self.curves, strict=True):
            ax.loglog(c.steps, c.forward, "o-", label="one-sided (forward)")
            ax.loglog(c.steps, c.central, "s-", label="two-sided (central)")
            eps = float(np.finfo(c.dtype).eps)
            for value, style in ((eps**0.5, ":"), (eps ** (1 / 3), "--")):
                ax.axvline(value, color="gray", linestyle=style)
            ax.set(xlabel="step h", title=f"{c.dtype}: dotted sqrt(eps), dashed cbrt(eps)")
            ax.legend()
        axes[0].set_ylabel("|error| of the derivative")
        return fig

    def plot(self, directory: Path) -> list[Path]:
        """``numdiff.png``: the figure of :meth:`figure`."""
        return [save_figure(self.figure(), Path(directory) / "numdiff.png")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options."""
    parser.add_argument("--points", type=int, default=27, help="steps from 1e-14 to 1e-1 (default 27)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the network and batch (default 0)")


def _slope(steps: np.ndarray, errors: np.ndarray) -> float:
    """Log-log slope over the truncation regime: steps at least 10 times the best one, where truncation rules."""
    keep = (steps >= 10 * steps[np.argmin(errors)]) & (errors > 0)
    return float(np.polyfit(np.log10(steps[keep]), np.log10(errors[keep]), 1)[0]) if keep.sum() >= 2 else float("nan")


def run(*, points: int = 27, seed: int = 0) -> NumdiffResult:
    """Measure both formulas' errors over the steps in float64 and float32.

    Examples
    --------
    >>> result = run(points=27)
    >>> 0.8 < result.curves[0].slope_forward < 1.2 and 1.8 < result.curves[0].slope_central < 2.2
    True
    """
    points = check_positive_int(points, name="points", minimum=4)
    net = Network([4, 8, 3], hidden="tanh", output="softmax")
    rng = np.random.default_rng(seed)
    base = net.init(rng, "glorot")
    base = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in base.items()}
    X, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    name = "W1"
    steps = np.logspace(-14, -1, points)
    curves = []
    for dtype in DTYPES:
        params = {k: v.astype(dtype) for k, v in base.items()}
        exact = net.gradients({k: v.astype(np.float64) for k, v in params.items()}, X, y)[name].reshape(-1)
        f0 = net.cost(params, X, y)
        flat = params[name].reshape(-1)
        forward, central = np.zeros((steps.size, flat.size)), np.zeros((steps.size, flat.size))
        for i in range(flat.size):
            w0 = flat[i].copy()
            for j, h in enumerate(steps):
                plus, minus = (w0 + np.asarray(h, dtype)).astype(dtype), (w0 - np.asarray(h, dtype)).astype(dtype)
                flat[i] = plus
                fp = net.cost(params, X, y)
                flat[i] = minus
                fm = net.cost(params, X, y)
                flat[i] = w0
                hp, hm = float(plus) - float(w0), float(w0) - float(minus)
                forward[j, i] = (fp - f0) / hp - exact[i] if hp > 0 else exact[i]
                central[j, i] = (fp - fm) / (hp + hm) - exact[i] if hp + hm > 0 else exact[i]
        # Root mean square over the tensor's coordinates: one coordinate's rounding error is too erratic to read.
        fa, ca = np.sqrt(np.mean(forward**2, axis=1)), np.sqrt(np.mean(central**2, axis=1))
        curves.append(
            Curve(
                dtype=dtype,
                steps=steps.tolist(),
                forward=fa.tolist(),
                central=ca.tolist(),
                best_forward=float(steps[np.argmin(fa)]),
                best_central=float(steps[np.argmin(ca)]),
                slope_forward=_slope(steps, fa),
                slope_central=_slope(steps, ca),
            )
        )
    derivative = float(np.sqrt(np.mean(exact**2)))
    return NumdiffResult(curves, derivative, f"{name} (all {exact.size} entries)", repr(net))
