"""The propagation report: per-layer statistics, the verdicts and their thresholds, the recommendation.

The verdict rules are described in :mod:`preflight.propagation.analysis`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from preflight._util import html
from preflight._util import jsonsafe as strict_json
from preflight._util.text import Table
from preflight._util.validation import check_in_range
from preflight._util.warn import PreflightWarning, warn

__all__ = [
    "VERDICTS",
    "LayerStats",
    "PropagationReport",
    "PropagationWarning",
    "Recommendation",
    "Thresholds",
    "check_thresholds",
    "layer_ranges",
    "layer_verdict",
    "overall_verdict",
]

Verdict = Literal["healthy", "vanishing", "exploding", "saturated", "dead"]
#: Verdicts in the order they are tested (and break ties in the overall verdict).
VERDICTS: tuple[str, ...] = ("dead", "saturated", "exploding", "vanishing", "healthy")


class PropagationWarning(PreflightWarning):
    """A layer looks vanishing, exploding, saturated or dead."""


@dataclass(frozen=True)
class Thresholds:
    """Where the verdicts start (see the module docstring)."""

    vanishing: float = 1e-2
    exploding: float = 1e2
    saturated: float = 0.3
    saturation_level: float = 0.99
    dead: float = 0.5

    def __post_init__(self) -> None:
        check_in_range(self.vanishing, name="vanishing", low=0.0, high=1.0, low_open=True, high_open=True)
        check_in_range(self.exploding, name="exploding", low=1.0, high=math.inf, low_open=True, high_open=True)
        check_in_range(self.saturated, name="saturated", low=0.0, high=1.0, low_open=True)
        check_in_range(self.saturation_level, name="saturation_level", low=0.0, high=1.0, low_open=True, high_open=True)
        check_in_range(self.dead, name="dead", low=0.0, high=1.0, low_open=True)


@dataclass(frozen=True)
class LayerStats:
    """Forward, backward and mean-field figures of one layer (``None`` where a figure does not apply)."""

    layer: int
    activation: str
    sigma_w2: float
    mean: float
    std: float
    pre_rms: float
    predicted_rms: float
    saturated_fraction: float | None
    dead_fraction: float | None
    delta_norm: float
    activation_grad_norm: float
    weight_grad_norm: float
    update_ratio: float
    chi_measured: float | None
    chi_predicted: float | None
    forward_ratio: float
    backward_ratio: float
    verdict: str


@dataclass(frozen=True)
class Recommendation:
    """The initialization scheme that fits the activations (a name in ``preflight.init.SCHEMES``) and why."""

    scheme: str
    reason: str


@dataclass(frozen=True)
class PropagationReport:
    """What :func:`analyze` returns: one :class:`LayerStats` per layer, the verdict and the recommendation."""

    layers: tuple[LayerStats, ...]
    verdict: str
    recommendation: Recommendation
    learning_rate: float
    thresholds: Thresholds = field(default_factory=Thresholds)

    def layers_with(self, verdict: str) -> list[int]:
        """Layer numbers with this verdict."""
        return [s.layer for s in self.layers if s.verdict == verdict]

    def warn(self) -> None:
        """Issue one :class:`PropagationWarning` per doubtful verdict, naming its layers and the scheme to try."""
        for verdict in VERDICTS[:-1]:
            layers = self.layers_with(verdict)
            if layers:
                warn(
                    f"{verdict} signal in layers {layer_ranges(layers)} of {len(self.layers)}; "
                    f"try init scheme {self.recommendation.scheme!r} ({self.recommendation.reason})",
                    PropagationWarning,
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and numbers (None where a figure does not apply)."""
        return {
            "verdict": self.verdict,
            "recommendation": asdict(self.recommendation),
            "learning_rate": self.learning_rate,
            "thresholds": asdict(self.thresholds),
            "layers": [asdict(s) for s in self.layers],
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """:meth:`to_dict` as strict JSON text (a figure that is not finite is ``null``)."""
        return strict_json.dumps(self.to_dict(), indent=indent)

    def table(self) -> Table:
        """The per-layer table that ``str()`` and the notebook view both show."""

        def pct(value: float | None) -> Any:
            return "" if value is None else f"{100 * value:.0f}%"

        def maybe(value: float | None) -> Any:
            return "" if value is None else value

        headers = ["layer", "act", "std", "sat/dead", "|dL/dZ|", "|dL/dW|", "lr|dW|/|W|", "chi", "chi (MF)", "verdict"]
        rows = [
            [
                s.layer,
                s.activation,
                s.std,
                pct(s.saturated_fraction if s.saturated_fraction is not None else s.dead_fraction),
                s.delta_norm,
                s.weight_grad_norm,
                s.update_ratio,
                maybe(s.chi_measured),
                maybe(s.chi_predicted),
                s.verdict,
            ]
            for s in self.layers
        ]
        return Table(headers, rows, title="Signal propagation, layer by layer (MF: mean-field prediction)")

    def _findings(self) -> list[str]:
        lines = [f"  {v}: layers {layer_ranges(self.layers_with(v))}" for v in VERDICTS[:-1] if self.layers_with(v)]
        return [*lines, f"recommended init: {self.recommendation.scheme} ({self.recommendation.reason})"]

    def __str__(self) -> str:
        return "\n".join([str(self.table()), "", f"verdict: {self.verdict}", *self._findings()])

    def __repr__(self) -> str:
        doubtful = [f"{v} in layers {layer_ranges(self.layers_with(v))}" for v in VERDICTS[:-1] if self.layers_with(v)]
        where = f" ({'; '.join(doubtful)})" if doubtful else ""
        return (
            f"<PropagationReport {self.verdict}{where}, {len(self.layers)} layers, "
            f"recommended init {self.recommendation.scheme!r}>"
        )

    def _repr_html_(self) -> str:
        """The notebook view: the verdict as a coloured badge, the per-layer table, the findings, a small plot."""
        from preflight.propagation.figure import draw

        findings = "".join(f"<div>{html.escape(line.strip())}</div>" for line in self._findings())
        plot = html.figure_img(lambda: draw(self, figsize=(13, 2.9), fontsize=8), alt="propagation per layer")
        return html.panel(
            "PropagationReport",
            html.badge(self.verdict),
            [html.html_table(self.table()), f'<div style="margin-top:.5em">{findings}</div>', plot],
            subtitle=f"{len(self.layers)} layers",
        )

    def plot(self, directory: str | Path) -> list[Path]:
        """``propagation.png``: forward scale, backward scale, chi and saturation per layer (needs the plot extra)."""
        from preflight._util.figures import save_figure
        from preflight.propagation.figure import draw

        return [save_figure(draw(self), Path(directory) / "propagation.png")]


def layer_ranges(layers: list[int]) -> str:
    """Compact layer list: ``[1, 2, 3, 7]`` -> ``"1-3, 7"``.

    Examples
    --------
    >>> layer_ranges([1, 2, 3, 7, 9, 10])
    '1-3, 7, 9-10'
    """
    parts: list[str] = []
    for layer in layers:
        if parts and parts[-1].split("-")[-1] == str(layer - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{layer}"
        else:
            parts.append(str(layer))
    return ", ".join(parts)


_CHECKS: dict[str, Callable[[Mapping[str, Any], Thresholds], bool]] = {
    "dead": lambda s, t: s["dead_fraction"] is not None and s["dead_fraction"] >= t.dead,
    "saturated": lambda s, t: s["saturated_fraction"] is not None and s["saturated_fraction"] >= t.saturated,
    "exploding": lambda s, t: max(s["forward_ratio"], s["backward_ratio"], _product(s)) > t.exploding,
    "vanishing": lambda s, t: min(s["forward_ratio"], s["backward_ratio"], _product(s)) < t.vanishing,
}


def _product(stats: Mapping[str, Any]) -> float:
    forward, backward = stats["forward_ratio"], stats["backward_ratio"]
    return 0.0 if forward == 0.0 or backward == 0.0 else float(forward * backward)


def check_thresholds(thresholds: Any) -> Thresholds:
    """``thresholds`` if it is a :class:`Thresholds` (None: the defaults), else a ValueError naming the fix.

    Examples
    --------
    >>> check_thresholds(None).exploding
    100.0
    """
    if thresholds is None:
        return Thresholds()
    if not isinstance(thresholds, Thresholds):
        raise ValueError(
            f"thresholds: expected a Thresholds (e.g. Thresholds(vanishing=1e-3)), got {type(thresholds).__name__}"
        )
    return thresholds


def layer_verdict(stats: Mapping[str, Any], thresholds: Thresholds | None = None) -> str:
    """The verdict for one layer from its statistics (the fields of :class:`LayerStats` but ``verdict``).

    The first that applies, in this order: dead, saturated, exploding, vanishing; else healthy. Used by
    :func:`analyze` and by :func:`preflight.torch.propagation`, so both judge a layer the same way.

    Examples
    --------
    >>> layer_verdict({"dead_fraction": None, "saturated_fraction": 0.01, "forward_ratio": 1e-4, "backward_ratio": 1.0})
    'vanishing'
    """
    thresholds = check_thresholds(thresholds)
    return next((name for name, check in _CHECKS.items() if check(stats, thresholds)), "healthy")


def overall_verdict(layers: Sequence[LayerStats]) -> str:
    """The network's verdict: the most common non-healthy layer verdict (ties go to the more severe), else healthy.

    Examples
    --------
    >>> overall_verdict([])
    'healthy'
    """
    counts = Counter(s.verdict for s in layers if s.verdict != "healthy")
    if not counts:
        return "healthy"
    return max(counts, key=lambda v: (counts[v], -VERDICTS.index(v)))
