"""The gradient check's report: the verdict, one result per tensor, the worst coordinates, hints; table and JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from preflight._util.text import format_table

__all__ = ["COURSE_THRESHOLDS", "Coordinate", "GradcheckReport", "TensorResult", "label"]

#: The course's reading of the relative difference (float64, eps = 1e-7): below 1e-7 fine, below 1e-5 worrying.
COURSE_THRESHOLDS = (1e-7, 1e-5)


def label(name: str, shape: tuple[int, ...], index: int | tuple[int, ...]) -> str:
    """``W1[2, 3]`` for a flat or tuple index into a tensor of ``shape`` (the bare name for a scalar).

    Examples
    --------
    >>> label("W1", (4, 5), 13)
    'W1[2, 3]'
    """
    if not shape:
        return name
    position = np.unravel_index(index, shape) if isinstance(index, int) else index
    return f"{name}[{', '.join(str(int(i)) for i in position)}]"


@dataclass(frozen=True)
class Coordinate:
    """One checked coordinate: where, both gradients, and the noise that could explain a difference."""

    index: tuple[int, ...]
    analytic: float
    numeric: float
    noise: float

    @property
    def discrepancy(self) -> float:
        """|analytic - numeric|."""
        return abs(self.analytic - self.numeric)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"index": list(self.index), "analytic": self.analytic, "numeric": self.numeric, "noise": self.noise}


@dataclass(frozen=True)
class TensorResult:
    """The check of one parameter tensor."""

    name: str
    shape: tuple[int, ...]
    size: int
    checked: int
    difference: float
    passed: bool
    failed: int
    significance: float  # the largest |analytic - numeric| / noise over checked coordinates
    worst: list[Coordinate] = field(default_factory=list)
    kinks: list[Coordinate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "size": self.size,
            "checked": self.checked,
            "difference": self.difference,
            "passed": self.passed,
            "failed": self.failed,
            "significance": self.significance,
            "worst": [c.to_dict() for c in self.worst],
            "kinks": [c.to_dict() for c in self.kinks],
        }


@dataclass(frozen=True)
class GradcheckReport:
    """The verdict, the tensors, and what went wrong.

    ``difference`` is the course's ``||g_num - g|| / (||g_num|| + ||g||)`` over the checked coordinates; ``passed``
    comes from the noise-calibrated test, not from a fixed threshold on it.
    """

    passed: bool
    difference: float
    parameters: dict[str, TensorResult]
    hints: list[str]
    dtype: str
    method: str
    noise: float
    evaluations: int
    seconds: float
    sampled: bool = False
    detection: dict[float, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def worst(self) -> str | None:
        """The tensor with the largest difference (among failing tensors when some fail)."""
        pool = [r for r in self.parameters.values() if not r.passed] or list(self.parameters.values())
        pool = [r for r in pool if r.checked]
        return max(pool, key=lambda r: (r.difference, r.significance)).name if pool else None

    @property
    def course_verdict(self) -> str:
        """What the course's thresholds (meant for float64 and eps = 1e-7) would say about ``difference``."""
        fine, worrying = COURSE_THRESHOLDS
        return "fine" if self.difference < fine else "worrying" if self.difference < worrying else "bug"

    @property
    def kinks(self) -> list[tuple[str, Coordinate]]:
        """Coordinates set aside as kinks within the step."""
        return [(r.name, c) for r in self.parameters.values() for c in r.kinks]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "passed": self.passed,
            "difference": self.difference,
            "course_verdict": self.course_verdict,
            "course_thresholds": list(COURSE_THRESHOLDS),
            "worst": self.worst,
            "hints": list(self.hints),
            "dtype": self.dtype,
            "method": self.method,
            "noise": self.noise,
            "evaluations": self.evaluations,
            "seconds": self.seconds,
            "sampled": self.sampled,
            "detection": {str(k): v for k, v in self.detection.items()},
            "notes": list(self.notes),
            "parameters": {name: r.to_dict() for name, r in self.parameters.items()},
        }

    def to_json(self) -> dict[str, Any]:
        """Same as :meth:`to_dict` (what the command line prints with --json)."""
        return self.to_dict()

    def __str__(self) -> str:
        checked = sum(r.checked for r in self.parameters.values())
        head = (
            f"Gradient check: {'PASSED' if self.passed else 'FAILED'} ({self.dtype}, {self.method} differences, "
            f"{checked:,} coordinates{' sampled' if self.sampled else ''}, {self.evaluations:,} loss evaluations, "
            f"{self.seconds:.2f} s)"
        )
        lines = [
            head,
            f"relative difference ||g_num - g|| / (||g_num|| + ||g||) = {self.difference:.2e} "
            f"(course thresholds, meant for float64 and eps = 1e-7: < 1e-7 fine, < 1e-5 worrying: "
            f"{self.course_verdict})",
            f"rounding noise of one loss value: {self.noise:.2e}; verdict: a coordinate fails when "
            "|analytic - numeric| exceeds what that noise explains",
            "",
        ]
        rows = [
            [
                r.name,
                "x".join(str(s) for s in r.shape) or "()",
                r.checked,
                r.difference,
                r.significance,
                r.failed,
                len(r.kinks),
                "ok" if r.passed else "FAIL",
            ]
            for r in self.parameters.values()
        ]
        headers = ["tensor", "shape", "checked", "difference", "error/noise", "failed", "kinks", "verdict"]
        lines.append(format_table(headers, rows))
        failing = [r for r in self.parameters.values() if not r.passed]
        if failing:
            lines += ["", "worst failing coordinates:"]
            for r in failing:
                # Only coordinates beyond their tolerance: listing passing ones under a failure misleads.
                for c in [c for c in r.worst if c.discrepancy > c.noise][:3]:
                    lines.append(
                        f"  {label(r.name, r.shape, c.index)}: analytic {c.analytic:.6g}, numeric {c.numeric:.6g}"
                        f" (noise {c.noise:.1e})"
                    )
        if self.kinks:
            lines.append(f"\n{len(self.kinks)} coordinate(s) set aside: kink within the step (ReLU at 0, max, abs)")
        if self.detection:
            chance = ", ".join(f"{q:.0%} of a tensor: {p:.3f}" for q, p in self.detection.items())
            lines.append(f"\nsampled; chance of having caught an error affecting {chance}")
        lines += [f"note: {n}" for n in self.notes]
        if self.hints:
            lines += ["", "hints:"] + [f"  - {h}" for h in self.hints]
        return "\n".join(lines)
