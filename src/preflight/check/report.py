"""The one report of every gradient check (NumPy black box, reference network, ``check_module``,
``check_function``): the verdict, one result per tensor, the worst coordinates, kinks, hints; text, JSON and HTML.

A coordinate of a parameter gradient and an entry of a Jacobian are the same record (:class:`Coordinate`); a Jacobian
entry also carries the output element it belongs to. A second-order check (``order=2``, ``hvp=``) adds its own
section, :attr:`GradcheckReport.second_order`, whose entries name the gradient element they belong to.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util import jsonsafe
from preflight._util.text import format_number, format_table
from preflight.check.guarantee import BROKEN_SHARE, detection_probability

__all__ = ["COURSE_THRESHOLDS", "Coordinate", "Entries", "GradcheckReport", "TensorResult", "label"]

#: The course's reading of the relative difference (float64, eps = 1e-7): below 1e-7 fine, below 1e-5 worrying.
COURSE_THRESHOLDS = (1e-7, 1e-5)
#: Failing coordinates shown per tensor in the text and HTML reports.
SHOWN = 3
#: The title of the second-order table in the text report.
SECOND_ORDER_TITLE = "second order (derivatives of the gradient, against differences of the gradient)"


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
    """One checked coordinate (or Jacobian entry): where, both derivatives, and the tolerance noise explains.

    ``output`` is the output element of a Jacobian entry (``(k, *index)``: the k-th output tensor, the index in it);
    None for the gradient of a scalar loss. ``output_name`` names what ``output`` indexes when it is not the
    function's output: a second-order entry's gradient (``grad W``, then ``output`` is the index in it).
    """

    index: tuple[int, ...]
    analytic: float
    numeric: float
    tolerance: float
    output: tuple[int, ...] | None = None
    output_name: str | None = None

    @property
    def discrepancy(self) -> float:
        """|analytic - numeric|."""
        return abs(self.analytic - self.numeric)

    def where(self, name: str) -> str:
        """``W[2, 3]``, ``x[1, 0] -> output[0, 1, 2]`` for a Jacobian entry, ``x[1] -> grad W[0, 2]`` for a
        second-order one (``output_name`` set)."""
        here = f"{name}[{', '.join(map(str, self.index))}]" if self.index else name
        if self.output is None:
            return here
        if self.output_name is None:
            return f"{here} -> output{list(self.output)}"
        return f"{here} -> {self.output_name}{list(self.output) if self.output else ''}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out: dict[str, Any] = {
            "index": list(self.index),
            "analytic": self.analytic,
            "numeric": self.numeric,
            "tolerance": self.tolerance,
        }
        if self.output is not None:
            out["output"] = list(self.output)
        if self.output_name is not None:
            out["output_name"] = self.output_name
        return out


@dataclass(frozen=True)
class Entries:
    """Every entry of a tensor's check, flat: its analytic value, whether it was judged, whether it failed. Kept (not
    shown, not serialized) where a float32 check fails a tensor and on the float64 copy's results, for the merge of
    :mod:`preflight.check.reference`."""

    analytic: NDArray[np.float64]
    judged: NDArray[np.bool_]
    bad: NDArray[np.bool_]


@dataclass(frozen=True)
class TensorResult:
    """The check of one tensor (a parameter, or an input of a function)."""

    name: str
    shape: tuple[int, ...]
    size: int
    checked: int
    difference: float
    passed: bool
    failed: int
    significance: float  # the largest |analytic - numeric| / tolerance over checked coordinates
    worst: list[Coordinate] = field(default_factory=list)
    kinks: list[Coordinate] = field(default_factory=list)
    #: Every checked coordinate was set aside as a kink: nothing proven about this tensor.
    inconclusive: bool = False
    #: The entries themselves, where the float64 copy's merge needs them (:class:`Entries`).
    entries: Entries | None = field(default=None, repr=False, compare=False)

    @property
    def detection(self) -> float:
        """The chance that the coordinates judged here would have caught an error affecting 1 % of the tensor's
        elements (exact hypergeometric form, :func:`preflight.check.guarantee.detection_probability`); 1 when
        every element was judged."""
        return detection_probability(self.size, self.checked, BROKEN_SHARE)

    @property
    def verdict(self) -> str:
        """ok, FAIL, or "all kinks" (nothing judged)."""
        return "FAIL" if not self.passed else "all kinks" if self.inconclusive else "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "name": self.name,
            "inconclusive": self.inconclusive,
            "shape": list(self.shape),
            "size": self.size,
            "checked": self.checked,
            "detection_1pct": self.detection,
            "difference": self.difference,
            "passed": self.passed,
            "failed": self.failed,
            "significance": self.significance,
            "worst": [c.to_dict() for c in self.worst],
            "kinks": [c.to_dict() for c in self.kinks],
        }

    def failing(self) -> list[Coordinate]:
        """The worst coordinates beyond their tolerance (listing passing ones under a failure misleads); a NaN on
        either side is beyond any tolerance."""
        return [c for c in self.worst if not c.discrepancy <= c.tolerance]


@dataclass(frozen=True)
class GradcheckReport:
    """The verdict, the tensors, and what went wrong.

    ``difference`` is the course's ``||g_num - g|| / (||g_num|| + ||g||)`` over the checked coordinates; ``passed``
    comes from the noise-calibrated test, not from a fixed threshold on it. ``forward_ad`` holds the forward-mode
    check of a function where one ran; ``stopped`` says why a check could not run to the end (then it failed).
    ``second_order`` holds the second-order check where one ran (``check_function(order=2)``: the Jacobian of the
    backward, per input; ``gradcheck(hvp=...)``, ``check_module(order=2)``: Hessian-vector products and Hessian
    columns, per direction or moved tensor); ``passed`` needs both orders.
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
    forward_ad: dict[str, TensorResult] | None = None
    stopped: str | None = None
    unit: str = "coordinates"
    second_order: dict[str, TensorResult] | None = None
    #: The same check on float64 copies of the values, where a float32 check made one
    #: (:mod:`preflight.check.reference`).
    reference: GradcheckReport | None = None

    @property
    def checked(self) -> int:
        """How many coordinates (Jacobian entries) were judged, kinks set aside not counted."""
        return sum(r.checked for r in self.parameters.values())

    @property
    def worst(self) -> str | None:
        """The tensor with the largest difference (among failing tensors when some fail; the second-order section's
        failing entry when only the second order fails)."""
        pool = [r for r in self.parameters.values() if not r.passed]
        pool = pool or [r for r in (self.second_order or {}).values() if not r.passed] or list(self.parameters.values())
        pool = [r for r in pool if r.checked]
        return max(pool, key=lambda r: (r.difference, r.significance)).name if pool else None

    @property
    def course_verdict(self) -> str:
        """What the course's thresholds (meant for float64 and eps = 1e-7) would say about ``difference``."""
        fine, worrying = COURSE_THRESHOLDS
        if math.isnan(self.difference):
            return "not checked"
        return "fine" if self.difference < fine else "worrying" if self.difference < worrying else "bug"

    @property
    def kinks(self) -> list[tuple[str, Coordinate]]:
        """Coordinates set aside as kinks within the step."""
        return [(r.name, c) for r in self.parameters.values() for c in r.kinks]

    def to_dict(self) -> dict[str, Any]:
        """A dict of plain Python values (what ``to_json`` writes)."""
        forward = None if self.forward_ad is None else {k: v.to_dict() for k, v in self.forward_ad.items()}
        second = None if self.second_order is None else {k: v.to_dict() for k, v in self.second_order.items()}
        return {
            "passed": self.passed,
            "difference": self.difference,
            "course_verdict": self.course_verdict,
            "course_thresholds": list(COURSE_THRESHOLDS),
            "worst": self.worst,
            "checked": self.checked,
            "unit": self.unit,
            "hints": list(self.hints),
            "dtype": self.dtype,
            "method": self.method,
            "noise": self.noise,
            "evaluations": self.evaluations,
            "seconds": self.seconds,
            "sampled": self.sampled,
            "detection": {str(k): v for k, v in self.detection.items()},
            "notes": list(self.notes),
            "stopped": self.stopped,
            "parameters": {name: r.to_dict() for name, r in self.parameters.items()},
            "forward_ad": forward,
            "second_order": second,
            "reference": None if self.reference is None else self.reference.to_dict(),
        }

    def to_json(self, **dumps_options: Any) -> str:
        """The report as a strict JSON string (non-finite numbers as null); :meth:`to_dict` gives the dict."""
        return jsonsafe.dumps(self.to_dict(), **dumps_options)

    @property
    def verdict(self) -> str:
        """PASSED, FAILED, or INCONCLUSIVE: no coordinate failed, but too few could be judged to call it a pass."""
        results = [*self.parameters.values(), *(self.forward_ad or {}).values(), *(self.second_order or {}).values()]
        if self.passed:
            return "PASSED"
        return "INCONCLUSIVE" if not self.stopped and all(r.passed for r in results) else "FAILED"

    def __repr__(self) -> str:
        failing = sum(not r.passed for r in self.parameters.values())
        where = f"worst {self.worst}, " if self.worst is not None and not self.passed else ""
        why = f"stopped: {self.stopped}" if self.stopped else f"{failing} of {len(self.parameters)} tensors failing"
        if self.second_order is not None and not self.stopped:
            why += f", second order: {sum(not r.passed for r in self.second_order.values())} failing"
        return (
            f"<GradcheckReport {self.verdict} ({self.dtype}): {where}difference {format_number(self.difference, 3)}, "
            f"{self.checked:,} {self.unit} judged, {why}>"
        )

    def __str__(self) -> str:
        head = (
            f"Gradient check: {self.verdict} ({self.dtype}, {self.method} differences, {self.checked:,} {self.unit}"
            f"{' sampled' if self.sampled else ''}, {self.evaluations:,} evaluations, {self.seconds:.2f} s)"
        )
        lines = [
            head,
            f"relative difference ||g_num - g|| / (||g_num|| + ||g||) = {self.difference:.2e} "
            f"(course thresholds, meant for float64 and eps = 1e-7: < 1e-7 fine, < 1e-5 worrying: "
            f"{self.course_verdict})",
        ]
        if self.stopped:
            lines.append(f"stopped: {self.stopped}")
        if self.noise > 0:
            lines.append(
                f"rounding noise of one loss value: {self.noise:.2e}; verdict: a coordinate fails when "
                "|analytic - numeric| exceeds what that noise explains"
            )
        if self.parameters:
            title = "backward (reverse-mode AD)" if self.forward_ad is not None else None
            lines += ["", _table(self.parameters, title, sampled=self.sampled)]
        if self.forward_ad is not None:
            lines += ["", _table(self.forward_ad, "forward-mode AD")]
        if self.second_order is not None:
            lines += ["", _table(self.second_order, SECOND_ORDER_TITLE)]
        sections = [*self.parameters.values(), *(self.forward_ad or {}).values(), *(self.second_order or {}).values()]
        failing = [r for r in sections if not r.passed]
        if failing:
            lines += ["", "worst failing coordinates:"]
            for r in failing:
                for c in r.failing()[:SHOWN]:
                    lines.append(
                        f"  {c.where(r.name)}: analytic {c.analytic:.6g}, numeric {c.numeric:.6g} "
                        f"(tolerance {c.tolerance:.1e})"
                    )
        if self.kinks:
            lines.append(f"\n{len(self.kinks)} coordinate(s) set aside: kink within the step (ReLU at 0, max, abs)")
        unsure = [r.name for r in self.parameters.values() if r.inconclusive]
        if unsure:
            lines.append(f"every checked coordinate of {', '.join(unsure)} sits at a kink: nothing proven there")
        if self.detection:
            chance = ", ".join(f"{q:.0%} of a tensor: {p:.3f}" for q, p in self.detection.items())
            lines.append(f"\nsampled; chance of having caught an error affecting {chance}")
            lines.append(
                "per tensor (column 'caught 1 %'): the chance its judged coordinates include one of an error "
                "affecting 1 % of its elements (exact hypergeometric)"
            )
        lines += [f"note: {n}" for n in self.notes]
        if self.hints:
            lines += ["", "hints:"] + [f"  - {h}" for h in self.hints]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.passed else "#cf222e"
        rows = []
        sections = (("", self.parameters), ("forward-mode AD: ", self.forward_ad or {}),
                    ("second order: ", self.second_order or {}))  # fmt: skip
        for title, results in sections:
            for r in results.values():
                shown = "".join(
                    f"<div><code>{html.escape(c.where(r.name))}</code>: analytic {c.analytic:.6g}, "
                    f"numeric {c.numeric:.6g}</div>"
                    for c in r.failing()[:SHOWN]
                )
                tone = "#cf222e" if not r.passed else "#9a6700" if r.inconclusive else "#1a7f37"
                rows.append(
                    f"<tr><td>{html.escape(title + r.name)}</td><td>{'x'.join(map(str, r.shape)) or '()'}</td>"
                    f"<td>{r.checked:,}</td>{f'<td>{r.detection:.3f}</td>' if self.sampled else ''}"
                    f"<td>{format_number(r.difference, 3)}</td><td>{r.failed}</td>"
                    f"<td>{len(r.kinks)}</td><td style='color:{tone};font-weight:bold'>"
                    f"{r.verdict}</td><td>{shown}</td></tr>"
                )
        columns = ("tensor", "shape", "checked", *(("caught 1 %",) if self.sampled else ()), "difference", "failed")
        header = "".join(f"<th>{h}</th>" for h in (*columns, "kinks", "verdict", ""))
        extra = [f"<b>stopped:</b> {html.escape(self.stopped)}"] if self.stopped else []
        extra += [f"<b>hint:</b> {html.escape(h)}" for h in self.hints]
        extra += [f"note: {html.escape(n)}" for n in self.notes]
        return (
            f"<div><p><span style='color:{colour};font-weight:bold'>Gradient check {self.verdict}</span> "
            f"({html.escape(self.dtype)}, {self.checked:,} {self.unit}, relative difference "
            f"{format_number(self.difference, 3)}; course thresholds say: {self.course_verdict})</p>"
            f"<table><tr>{header}</tr>{''.join(rows)}</table>" + "".join(f"<p>{e}</p>" for e in extra) + "</div>"
        )


def _table(results: dict[str, TensorResult], title: str | None, *, sampled: bool = False) -> str:
    rows = [
        [
            r.name,
            "x".join(str(s) for s in r.shape) or "()",
            r.checked,
            *([f"{r.detection:.3f}"] if sampled else []),
            r.difference,
            r.significance,
            r.failed,
            len(r.kinks),
            r.verdict,
        ]
        for r in results.values()
    ]
    headers = ["tensor", "shape", "checked", *(["caught 1 %"] if sampled else []), "difference", "error/tolerance"]
    headers += ["failed", "kinks", "verdict"]
    return format_table(headers, rows, title=title)
