"""The words of the verdicts over time: what each says about the layers it names, and the fix it suggests.

The titles are the one-point diagnosis' ("vanishing signal in layers 12-20 of 20", as
:meth:`preflight.propagation.PropagationReport.warn` words it), the thresholds quoted are its :class:`Thresholds`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from preflight._util.text import format_number
from preflight.propagation.history import HealthHistory
from preflight.propagation.report import Recommendation, Thresholds

__all__ = ["MAX_UPDATE_RATIO", "TITLES", "UPDATE_RATIO_RULE_OF_THUMB", "Wording", "fix", "format_percent"]

#: |delta W| / |W| per step that the rule of thumb aims at (CS231n; see :mod:`preflight.propagation.timeline`).
UPDATE_RATIO_RULE_OF_THUMB = 1e-3
#: Where ``large_updates`` starts by default: a tenth of the weight's norm in one step, 100x the rule of thumb.
MAX_UPDATE_RATIO = 0.1

#: The one-point diagnosis' wording ("vanishing signal in layers 12-20 of 20"), and the update verdict's.
TITLES = {
    "dead": "dead signal",
    "saturated": "saturated signal",
    "exploding": "exploding signal",
    "vanishing": "vanishing signal",
    "large_updates": "updates too large",
}


def format_percent(fraction: float) -> str:
    """``0.71`` -> ``'71 %'``.

    Examples
    --------
    >>> format_percent(0.705), format_percent(1.0)
    ('70 %', '100 %')
    """
    return f"{100 * fraction:.0f} %"


def growth(points: list[tuple[int, float]]) -> float | None:
    """Growth factor per 100 steps of positive values at steps, by least squares on their log10.

    Examples
    --------
    >>> round(growth([(0, 1e-3), (50, 10**-2.5), (100, 1e-2)]), 6)
    10.0
    """
    points = [(s, v) for s, v in points if v > 0]
    if len(points) < 2:
        return None
    mean_s = sum(s for s, _ in points) / len(points)
    mean_v = sum(math.log10(v) for _, v in points) / len(points)
    spread = sum((s - mean_s) ** 2 for s, _ in points)
    slope = sum((s - mean_s) * (math.log10(v) - mean_v) for s, v in points) / spread
    return float(10 ** (100 * slope))


def fix(kind: str, advice: Recommendation) -> str:
    """The fix a verdict suggests (``advice``: the init scheme for the network's activations).

    Examples
    --------
    >>> fix("large_updates", Recommendation("he", "ReLU"))
    'lower the learning rate, or clip gradients (torch.nn.utils.clip_grad_norm_)'
    """
    scheme = f"init scheme {advice.scheme!r} ({advice.reason})"
    return {
        "dead": "lower the learning rate (one step too large pushes ReLU units where they never fire again) or "
        "use a leaky activation (LeakyReLU); re-initialize with init scheme 'he'",
        "saturated": f"scale the weights down: {scheme}; normalize the layer's input (LayerNorm/BatchNorm); "
        "lower the learning rate",
        "exploding": "clip gradients (torch.nn.utils.clip_grad_norm_) and lower the learning rate; "
        f"{scheme} keeps the scale at initialization",
        "vanishing": f"try {scheme}; normalization (BatchNorm/LayerNorm) or residual connections keep the scale "
        "as training goes",
        "large_updates": "lower the learning rate, or clip gradients (torch.nn.utils.clip_grad_norm_)",
    }[kind]


@dataclass(frozen=True)
class Wording:
    """Words for the verdicts of one history, with its thresholds."""

    history: HealthHistory
    thresholds: Thresholds
    max_update_ratio: float

    def holds(self, row: dict[str, Any], kind: str) -> bool:
        """Whether ``row`` shows the verdict ``kind`` (its layer's verdict, or an update above the limit)."""
        if kind == "large_updates":
            return row["update_ratio"] is not None and row["update_ratio"] > self.max_update_ratio
        return bool(row["verdict"] == kind)

    def detail(self, kind: str, rows: list[dict[str, Any]], began: int) -> tuple[float, str]:
        """The figure behind a verdict at its worst over ``rows``, and the words that say it."""
        if kind == "dead":
            return self._dead(rows, began)
        if kind == "saturated":
            return self._saturated(rows)
        if kind == "large_updates":
            return self._large_updates(rows, began)
        return self._ratios(rows, low=kind == "vanishing")

    def _dead(self, rows: list[dict[str, Any]], began: int) -> tuple[float, str]:
        worst = max(row["dead_fraction"] or 0.0 for row in rows)
        text = (
            f"{format_percent(worst)} of ReLU units never active on the monitored batch "
            f"(threshold {format_percent(self.thresholds.dead)})"
        )
        return worst, text + self._before({row["layer"] for row in rows}, began)

    def _before(self, layers: set[int], began: int) -> str:
        """What the learning rate and the updates did just before a verdict began (a step too large is what kills
        ReLU units): said when the learning rate more than doubled from its lowest earlier value, or when an update
        was too large or 10x the layer's median update before."""
        steps = self.history.steps
        recent = [step for step in steps if step <= began][-2:]
        said = []
        rates = self.history.learning_rates
        earlier_rates = [rates[step] for step in steps if step < recent[0] and step in rates] if recent else []
        peak_rate = max((rates[step] for step in recent if step in rates), default=None)
        if earlier_rates and peak_rate is not None and peak_rate > 2 * min(earlier_rates):
            said.append(
                f"the learning rate rose from {format_number(min(earlier_rates), 3)} to {format_number(peak_rate, 3)}"
            )
        ratios = [row for row in self.history.rows() if row["layer"] in layers and row["update_ratio"] is not None]
        peak = max((row for row in ratios if row["step"] in recent), key=lambda row: row["update_ratio"], default=None)
        usual = sorted(row["update_ratio"] for row in ratios if recent and row["step"] < recent[0])
        if peak is not None:
            median = usual[len(usual) // 2] if usual else None
            value = peak["update_ratio"]
            if value > self.max_update_ratio or (median is not None and median > 0 and value > 10 * median):
                told = f" ({value / median:.0f}x the usual)" if median else ""
                said.append(f"updates reached {format_number(value, 2)} x |W| at step {peak['step']:,}{told}")
        return f"; {' and '.join(said)} just before (learning rate too large?)" if said else ""

    def _saturated(self, rows: list[dict[str, Any]]) -> tuple[float, str]:
        worst = max(row["saturated_fraction"] or 0.0 for row in rows)
        t = self.thresholds
        return worst, (
            f"{format_percent(worst)} of activations beyond {t.saturation_level:g} of their range "
            f"(threshold {format_percent(t.saturated)})"
        )

    def _ratios(self, rows: list[dict[str, Any]], *, low: bool) -> tuple[float, str]:
        pick = min if low else max
        candidates = [
            (value, label)
            for row in rows
            for value, label in (
                (row["forward_ratio"], "forward ratio rms(Z_l)/rms(X)"),
                (row["backward_ratio"], "backward ratio |dL/dZ_l|/|dL/dZ_L|"),
                (row["forward_ratio"] * row["backward_ratio"], "product of the forward and backward ratios"),
            )
        ]
        value, label = pick(candidates, key=lambda c: c[0])
        limit = self.thresholds.vanishing if low else self.thresholds.exploding
        text = f"{label} {'down' if low else 'up'} to {format_number(value, 2)} (threshold {limit:g})"
        return value, text + (self._fall(rows) if low else "")

    def _fall(self, rows: list[dict[str, Any]]) -> str:
        """How far |dL/dZ| fell from the layer's first monitored step (said when it fell 10x or more)."""
        falls = []
        for layer in {row["layer"] for row in rows}:
            first = next(r for r in self.history.rows() if r["layer"] == layer)
            lowest = min(
                (r["delta_norm"] for r in rows if r["layer"] == layer and r["delta_norm"] is not None), default=None
            )
            if first["delta_norm"] and lowest is not None and lowest > 0:
                falls.append((first["delta_norm"] / lowest, first["step"]))
        if not falls or max(falls)[0] < 10:
            return ""
        factor, since = max(falls)
        return f"; |dL/dZ| fell {factor:.0e}x since step {since:,}".replace("e+0", "e").replace("e+", "e")

    def _large_updates(self, rows: list[dict[str, Any]], began: int) -> tuple[float, str]:
        worst = max(row["update_ratio"] for row in rows if row["update_ratio"] is not None)
        text = (
            f"update/weight ratio {format_number(worst, 2)} (rule of thumb ~{UPDATE_RATIO_RULE_OF_THUMB:g}, "
            f"limit {self.max_update_ratio:g})"
        )
        # How fast it grew as it crossed the limit: the largest ratio of the named layers over the two monitored
        # steps before the verdict began and the three from then on.
        steps = self.history.steps
        window = set(steps[max(steps.index(began) - 2, 0) : steps.index(began) + 3])
        layers = {row["layer"] for row in rows}
        largest: dict[int, float] = {}
        for row in self.history.rows():
            if row["step"] in window and row["layer"] in layers and row["update_ratio"] is not None:
                largest[row["step"]] = max(largest.get(row["step"], 0.0), row["update_ratio"])
        factor = growth(sorted(largest.items()))
        if factor is not None and factor >= 2:
            text += f", growing {format_number(factor, 2)}x per 100 steps"
        return worst, text
