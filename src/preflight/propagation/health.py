"""The health report of a training run: verdicts over time with their fixes, the layers at the last monitored step,
the raw history (CSV, pandas) and figures. What :meth:`preflight.torch.Monitor.report` and
:meth:`preflight.propagation.HealthCallback.report` return."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from preflight._util import jsonsafe
from preflight._util.text import format_table
from preflight.propagation.health_words import UPDATE_RATIO_RULE_OF_THUMB, format_percent
from preflight.propagation.history import HealthHistory
from preflight.propagation.report import Recommendation, Thresholds
from preflight.propagation.timeline import HealthVerdict, Timeline

__all__ = ["HealthReport", "LayerInfo"]

#: Columns of the table (statistic, header) at the last monitored step.
_TABLE = (
    ("std", "std(A)"),
    ("fraction", "sat/dead"),
    ("delta_norm", "|dL/dZ|"),
    ("weight_grad_norm", "|dL/dW|"),
    ("update_ratio", "|dW|/|W|"),
)


@dataclass(frozen=True)
class LayerInfo:
    """A monitored layer: its number (execution order), its name in the model and the activation after it."""

    layer: int
    name: str
    activation: str


@dataclass(frozen=True)
class HealthReport:
    """Verdicts over time, per layer, with the step they began and the fix each suggests.

    ``verdicts`` is empty when every layer was healthy at every monitored step. ``history`` holds the raw per-layer
    summaries (:meth:`to_csv`, :meth:`to_frame`); :meth:`to_dict` carries the verdicts and the last monitored step.
    """

    verdicts: tuple[HealthVerdict, ...]
    layers: tuple[LayerInfo, ...]
    history: HealthHistory
    steps: int
    every: int
    thresholds: Thresholds
    max_update_ratio: float
    patience: int
    recommendation: Recommendation
    notes: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_timeline(cls, timeline: Timeline, *, steps: int, every: int, notes: Sequence[str] = ()) -> HealthReport:
        """The report of what ``timeline`` has seen over ``steps`` steps monitored every ``every``."""
        layers = tuple(LayerInfo(n, timeline.names[n], timeline.activations[n]) for n in sorted(timeline.names))
        return cls(
            tuple(timeline.verdicts()),
            layers,
            timeline.history,
            steps,
            every,
            timeline.thresholds,
            timeline.max_update_ratio,
            timeline.patience,
            timeline.recommendation() if layers else Recommendation("orthogonal", "no layer was monitored"),
            tuple(notes),
        )

    @property
    def healthy(self) -> bool:
        """No verdict at any monitored step."""
        return not self.verdicts

    def layers_with(self, verdict: str) -> list[int]:
        """Layer numbers named by a verdict of this kind (at any time).

        Examples
        --------
        >>> from preflight.propagation import Timeline
        >>> HealthReport.from_timeline(Timeline(), steps=0, every=50).layers_with("dead")
        []
        """
        return sorted({layer for v in self.verdicts if v.verdict == verdict for layer in v.layers})

    def last(self) -> dict[int, dict[str, Any]]:
        """Each layer's row at the last monitored step where it was recorded."""
        found: dict[int, dict[str, Any]] = {}
        for row in self.history.rows():
            found[row["layer"]] = row
        return found

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the verdicts, the layers with their last row, the thresholds (raw history: :meth:`to_csv`)."""
        last = self.last()
        return {
            "healthy": self.healthy,
            "steps": self.steps,
            "every": self.every,
            "records": len(self.history.steps),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "layers": [{**asdict(info), "last": last.get(info.layer)} for info in self.layers],
            "thresholds": asdict(self.thresholds),
            "max_update_ratio": self.max_update_ratio,
            "update_ratio_rule_of_thumb": UPDATE_RATIO_RULE_OF_THUMB,
            "patience": self.patience,
            "recommendation": asdict(self.recommendation),
            "notes": list(self.notes),
        }

    def to_json(self, **options: Any) -> str:
        """:meth:`to_dict` as strict JSON text (non-finite numbers as null)."""
        return jsonsafe.dumps(self.to_dict(), **options)

    def to_csv(self, path: str | Path | None = None) -> str:
        """The raw history as CSV text (also written to ``path`` when given): see :class:`HealthHistory`."""
        return self.history.to_csv(path)

    def to_frame(self) -> Any:
        """The raw history as a pandas DataFrame (extra ``data``)."""
        return self.history.to_frame()

    def plot(self, directory: str | Path) -> list[Path]:
        """``health_heatmaps.png`` (layers x steps, one panel per statistic) and ``health_timeline.png`` (each
        layer's verdict at each monitored step, and the loss when it was given); needs the plot extra."""
        from preflight.propagation.health_figures import plot_heatmaps, plot_timeline

        directory = Path(directory)
        return [
            plot_heatmaps(self.history, directory / "health_heatmaps.png"),
            plot_timeline(
                self.history, self.verdicts, directory / "health_timeline.png", max_update_ratio=self.max_update_ratio
            ),
        ]

    # ---------------------------------------------------------------- text
    def _headline(self) -> str:
        records = len(self.history.steps)
        return (
            f"Training health: {self.steps:,} steps, monitored every {self.every:,} ({records:,} records), "
            f"{len(self.layers)} layers"
        )

    def _rows(self) -> list[list[Any]]:
        last, rows = self.last(), []
        for info in self.layers:
            row = last.get(info.layer, {})
            fraction = row.get("saturated_fraction")
            fraction = row.get("dead_fraction") if fraction is None else fraction
            values = {**row, "fraction": "" if fraction is None else format_percent(fraction)}
            cells: list[Any] = [info.layer, info.name, info.activation]
            cells += ["" if values.get(key) is None else values[key] for key, _ in _TABLE]
            current = [v.verdict for v in self.verdicts if info.layer in v.layers and v.ended is None]
            cells.append(", ".join(current) or row.get("verdict", ""))
            rows.append(cells)
        return rows

    def __str__(self) -> str:
        headers = ["layer", "name", "act", *(h for _, h in _TABLE), "verdict now"]
        step = self.history.steps[-1] if self.history.steps else 0
        lines = [
            self._headline(),
            f"(the thresholds of the one-point diagnosis; a verdict counts after {self.patience} monitored "
            f"step{'s' if self.patience > 1 else ''} in a row; update/weight rule of thumb "
            f"~{UPDATE_RATIO_RULE_OF_THUMB:g}, limit {self.max_update_ratio:g})",
            "",
            format_table(headers, self._rows(), title=f"At the last monitored step ({step:,})"),
            "",
        ]
        if self.healthy:
            lines.append("no verdict: every layer healthy at every monitored step")
        else:
            lines.append("verdicts:")
            for verdict in self.verdicts:
                until = "" if verdict.ended is None else f" (until step {verdict.ended:,})"
                lines += [f"  - {verdict.message}{until}", f"    fix: {verdict.fix}"]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        if self.healthy:
            state = "healthy"
        else:
            first = self.verdicts[0]
            more = f" (+{len(self.verdicts) - 1} more)" if len(self.verdicts) > 1 else ""
            state = f"{first.verdict} in layers {list(first.layers)} since step {first.began:,}{more}"
        return f"HealthReport({self.steps:,} steps, every {self.every}, {len(self.layers)} layers: {state})"

    def _repr_html_(self) -> str:
        escape = html.escape
        parts = [f"<p><b>{escape(self._headline())}</b></p>"]
        if self.healthy:
            parts.append("<p>No verdict: every layer healthy at every monitored step.</p>")
        else:
            items = "".join(f"<li>{escape(v.message)}<br><i>fix:</i> {escape(v.fix)}</li>" for v in self.verdicts)
            parts.append(f"<ul>{items}</ul>")
        headers = ["layer", "name", "act", *(h for _, h in _TABLE), "verdict now"]
        head = "".join(f"<th>{escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{escape(_cell(c))}</td>" for c in row) + "</tr>" for row in self._rows())
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        parts += [f"<p>note: {escape(note)}</p>" for note in self.notes]
        return "\n".join(parts)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
