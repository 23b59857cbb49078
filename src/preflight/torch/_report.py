"""The check report of the PyTorch adapter: per tensor, its difference, its worst elements, and hints.

Its fields follow the NumPy checker's contract (``passed``, ``difference``, ``parameters``, ``worst``, ``hints``,
``str()``, ``to_dict()``), so a reader of one reads the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.text import format_number, format_table

__all__ = ["CheckReport", "Element", "TensorResult"]

A = NDArray[Any]
#: The course's thresholds on the relative difference, shown beside the calibrated verdict for reference.
SEED_THRESHOLDS = (1e-7, 1e-5)


@dataclass(frozen=True)
class Element:
    """One checked element: its index in the tensor (and in the output, for a Jacobian), both values, the noise."""

    index: tuple[int, ...]
    analytic: float
    numeric: float
    tolerance: float
    output: tuple[int, ...] | None = None

    @property
    def error(self) -> float:
        return abs(self.analytic - self.numeric)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": list(self.index),
            "analytic": self.analytic,
            "numeric": self.numeric,
            "tolerance": self.tolerance,
        }
        if self.output is not None:
            out["output"] = list(self.output)
        return out


@dataclass(frozen=True)
class TensorResult:
    """The verdict on one tensor: relative difference, how many elements exceed the noise, the worst of them."""

    name: str
    shape: tuple[int, ...]
    checked: int
    difference: float
    failed: int
    kinks: int
    worst: tuple[Element, ...]

    @property
    def passed(self) -> bool:
        return self.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "checked": self.checked,
            "difference": self.difference,
            "passed": self.passed,
            "failed": self.failed,
            "kinks": self.kinks,
            "worst": [e.to_dict() for e in self.worst],
        }


@dataclass(frozen=True)
class CheckReport:
    """What :func:`preflight.torch.check_module` and :func:`preflight.torch.check_function` return."""

    parameters: dict[str, TensorResult]
    difference: float
    hints: list[str]
    notes: list[str] = field(default_factory=list)
    dtype: str = "float64"
    evaluations: int = 0
    seconds: float = 0.0
    forward_ad: dict[str, TensorResult] | None = None
    stopped: str | None = None

    @property
    def passed(self) -> bool:
        if self.stopped is not None:
            return False
        forward_ok = self.forward_ad is None or all(r.passed for r in self.forward_ad.values())
        return all(r.passed for r in self.parameters.values()) and forward_ok

    @property
    def worst(self) -> str | None:
        """The name of the tensor with the largest relative difference (failing tensors first)."""
        if not self.parameters:
            return None
        return max(self.parameters.values(), key=lambda r: (not r.passed, r.difference)).name

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "difference": self.difference,
            "worst": self.worst,
            "dtype": self.dtype,
            "evaluations": self.evaluations,
            "seconds": self.seconds,
            "parameters": {k: v.to_dict() for k, v in self.parameters.items()},
            "forward_ad": None if self.forward_ad is None else {k: v.to_dict() for k, v in self.forward_ad.items()},
            "hints": list(self.hints),
            "notes": list(self.notes),
            "stopped": self.stopped,
        }

    def __str__(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        low, high = SEED_THRESHOLDS
        head = (
            f"gradient check {verdict} ({self.dtype}): relative difference {format_number(self.difference)} "
            f"(course thresholds for reference: < {low:g} fine, > {high:g} a bug); "
            f"{self.evaluations} evaluations in {self.seconds:.2f} s"
        )
        lines = [head, "", _table("backward (reverse-mode AD)", self.parameters)]
        if self.forward_ad is not None:
            lines += ["", _table("forward-mode AD", self.forward_ad)]
        failing = [r for r in self.parameters.values() if not r.passed]
        for r in failing[:5]:
            lines.append(f"\nworst elements of {r.name}:")
            for e in r.worst[:5]:
                where = f"{r.name}{list(e.index)}" + ("" if e.output is None else f" -> output{list(e.output)}")
                lines.append(f"  {where}: analytic {e.analytic:.6g}, numeric {e.numeric:.6g} (noise {e.tolerance:.2g})")
        lines += [f"hint: {h}" for h in self.hints] + [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _table(title: str, results: dict[str, TensorResult]) -> str:
    rows = []
    for r in results.values():
        shape = "x".join(map(str, r.shape)) or "scalar"
        rows.append([r.name, shape, r.checked, r.difference, r.failed, r.kinks, "ok" if r.passed else "FAIL"])
    return format_table(["tensor", "shape", "checked", "difference", "failed", "kinks", "verdict"], rows, title=title)


def relative_difference(analytic: A, numeric: A) -> float:
    """``||n - a|| / (||n|| + ||a||)``, the course's metric (0 when both are zero).

    Examples
    --------
    >>> relative_difference(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    0.0
    """
    denominator = float(np.linalg.norm(numeric) + np.linalg.norm(analytic))
    return 0.0 if denominator == 0.0 else float(np.linalg.norm(numeric - analytic)) / denominator


def hints_for(results: dict[str, tuple[A, A, A]]) -> list[str]:
    """Name the kind of bug from analytic and numeric values of the failing tensors.

    ``results`` maps a tensor name to ``(analytic, numeric, bad)`` arrays of the tensor's shape (``bad`` marks the
    elements beyond the noise). Recognized: a constant factor, a sign flip, a transposed gradient, a gradient that is
    zero where the loss depends on the parameter (and the converse), a few isolated wrong elements, one common factor
    across all tensors.
    """
    hints: list[str] = []
    factors: list[float] = []
    for name, (analytic, numeric, bad) in results.items():
        if not bad.any():
            continue
        a, n = analytic.ravel(), numeric.ravel()
        hint, factor = _tensor_hint(name, analytic, numeric, bad)
        hints.append(hint)
        if factor is not None:
            factors.append(factor)
        elif float(np.dot(n, n)) > 0 and not np.allclose(a, 0):
            factors.append(float("nan"))
    if len(factors) >= 2 and all(np.isfinite(factors)) and np.ptp(factors) < 0.01 * abs(np.mean(factors)):
        hints.append(
            f"every failing tensor is off by the same factor {np.mean(factors):.3g}: a factor missing at the loss "
            "(a 1/m, a mean versus a sum) rather than in one layer"
        )
    return hints


def _tensor_hint(name: str, analytic: A, numeric: A, bad: A) -> tuple[str, float | None]:
    a, n = analytic.ravel(), numeric.ravel()
    nn_ = float(np.dot(n, n))
    if nn_ > 0 and not np.any(a):
        return f"{name}: the analytic gradient is zero but the loss does depend on it (backward not connected?)", None
    if nn_ == 0 or not np.any(n):
        return f"{name}: the analytic gradient is non-zero but the loss does not depend on it", None
    factor = float(np.dot(a, n)) / nn_
    residual = float(np.linalg.norm(a - factor * n)) / max(float(np.linalg.norm(a)), 1e-300)
    if residual < 1e-2 and abs(factor - 1.0) > 1e-3:
        if abs(factor + 1.0) < 1e-2:
            return f"{name}: analytic = -1 x numeric, a sign flip", factor
        return f"{name}: analytic = {factor:.3g} x numeric, a constant factor", factor
    if analytic.ndim == 2 and analytic.shape[0] == analytic.shape[1] and analytic.shape[0] > 1:
        if np.allclose(analytic.T, numeric, rtol=1e-3, atol=1e-3 * float(np.abs(numeric).max())):
            return f"{name}: the analytic gradient is the transpose of the numeric one", None
    count = int(bad.sum())
    if count <= max(1, bad.size // 20):
        first = tuple(int(i) for i in np.argwhere(bad.reshape(analytic.shape))[0])
        return f"{name}: {count} of {bad.size} elements wrong, the rest right (first at index {first})", None
    return f"{name}: {count} of {bad.size} elements beyond the noise, no simple pattern", None
