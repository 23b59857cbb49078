"""Verdicts over time: the one-point diagnosis applied at every monitored step of a training run, and remembered.

At each monitored step every layer is judged by :func:`preflight.propagation.layer_verdict` (the same thresholds,
:class:`Thresholds`, as :func:`preflight.propagation.analyze`): dead, saturated, exploding or vanishing. Two
verdicts need training to exist and are added here:

- ``large_updates``: the measured update-to-weight ratio ``|W_after - W_before| / |W_before|`` of one step above
  ``max_update_ratio`` [0.1]. The rule of thumb is a ratio around 1e-3 (:data:`UPDATE_RATIO_RULE_OF_THUMB`, from
  Karpathy's CS231n notes, "Neural Networks Part 3: Learning and Evaluation", section "Ratio of weights:updates":
  "a rough heuristic is that this ratio should be somewhere around 1e-3. If it is lower than this then the learning
  rate might be too low. If it is higher then the learning rate is likely too high."). Adaptive optimizers sit
  higher by design (Adam moves every weight by about its learning rate, a ratio of ~lr * sqrt(fan_in), 1.6e-2 at
  lr = 1e-3 and fan_in = 256), so the verdict starts two decades above the rule, where a tenth of a layer's weight
  changes in one step;
- ``nonfinite``: the first NaN or infinity, named by where it appeared (recorded once, when it is found).

A verdict counts once it holds at ``patience`` [2] consecutive monitored steps (one odd batch is not a verdict);
it began at the first of them. It ends once it has been absent at ``patience`` consecutive monitored steps, at the
first of those (so a fraction that hovers around its threshold makes one spell, not many).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from preflight._util.validation import check_in_range, check_positive_int
from preflight.propagation.analysis import recommend_for
from preflight.propagation.health_words import MAX_UPDATE_RATIO, TITLES, UPDATE_RATIO_RULE_OF_THUMB, Wording, fix
from preflight.propagation.history import HealthHistory
from preflight.propagation.report import (
    PropagationWarning,
    Recommendation,
    Thresholds,
    check_thresholds,
    layer_ranges,
    layer_verdict,
)

__all__ = [
    "MAX_UPDATE_RATIO",
    "TIMELINE_VERDICTS",
    "UPDATE_RATIO_RULE_OF_THUMB",
    "HealthVerdict",
    "HealthWarning",
    "Timeline",
    "step_verdict",
]

#: The verdicts a timeline reports, most severe first.
TIMELINE_VERDICTS: tuple[str, ...] = ("nonfinite", "dead", "saturated", "exploding", "vanishing", "large_updates")


class HealthWarning(PropagationWarning):
    """A layer turned dead, saturated, vanishing or exploding during training, its updates grew too large, or a
    non-finite value appeared."""


@dataclass(frozen=True)
class HealthVerdict:
    """One verdict over time: which layers, since when (``ended`` None: it still held at the last monitored step),
    the figure behind it at its worst, what it means and the fix it suggests."""

    verdict: str
    layers: tuple[int, ...]
    began: int
    ended: int | None
    value: float
    message: str
    fix: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "verdict": self.verdict,
            "layers": list(self.layers),
            "began": self.began,
            "ended": self.ended,
            "value": self.value,
            "message": self.message,
            "fix": self.fix,
        }

    def __str__(self) -> str:
        return f"{self.message}\n    fix: {self.fix}"


def step_verdict(row: Mapping[str, Any], thresholds: Thresholds | None = None) -> str:
    """A layer's verdict at one monitored step: ``nonfinite``, ``n/a`` (a ratio not measured) or the one-point rule.

    Examples
    --------
    >>> step_verdict({"dead_fraction": 0.7, "saturated_fraction": None, "forward_ratio": 1.0, "backward_ratio": 1.0})
    'dead'
    >>> step_verdict({"nonfinite": True}), step_verdict({"forward_ratio": None, "backward_ratio": 1.0})
    ('nonfinite', 'n/a')
    """
    if row.get("nonfinite"):
        return "nonfinite"
    if row.get("forward_ratio") is None or row.get("backward_ratio") is None:
        return "n/a"
    return layer_verdict(
        {key: row.get(key) for key in ("dead_fraction", "saturated_fraction", "forward_ratio", "backward_ratio")},
        thresholds,
    )


@dataclass
class _Run:
    """Consecutive monitored steps where one layer held one verdict."""

    layer: int
    verdict: str
    began: int
    count: int = 1
    confirmed: bool = False
    ended: int | None = None
    missed: int = 0  # consecutive monitored steps without the verdict, since ``missed_from``
    missed_from: int | None = None


class Timeline:
    """Judge each monitored step's rows, keep them in a :class:`HealthHistory`, and track verdicts over time.

    Parameters
    ----------
    thresholds : Thresholds, optional
        As in :func:`preflight.propagation.analyze`.
    max_update_ratio : float
        Where ``large_updates`` starts (module docstring).
    patience : int
        Consecutive monitored steps a verdict must hold before it counts.

    Examples
    --------
    >>> timeline = Timeline(patience=1)
    >>> row = {"layer": 1, "name": "0", "activation": "relu", "forward_ratio": 1.0, "backward_ratio": 1.0}
    >>> [v.verdict for v in timeline.observe(0, [{**row, "dead_fraction": 0.1}])]
    []
    >>> for verdict in timeline.observe(50, [{**row, "dead_fraction": 0.8}]):
    ...     print(verdict.message)
    dead signal in layer 1 (0) of 1 since step 50: 80 % of ReLU units never active on the monitored batch
    (threshold 50 %)
    """

    def __init__(
        self, thresholds: Thresholds | None = None, *, max_update_ratio: float = MAX_UPDATE_RATIO, patience: int = 2
    ) -> None:
        self.thresholds = check_thresholds(thresholds)
        self.max_update_ratio = check_in_range(
            max_update_ratio, name="max_update_ratio", low=0.0, high=math.inf, low_open=True
        )
        self.patience = check_positive_int(patience, name="patience")
        self.history = HealthHistory()
        self.names: dict[int, str] = {}
        self.activations: dict[int, str] = {}
        self.nonfinite: HealthVerdict | None = None
        self._runs: list[_Run] = []
        self._open: dict[tuple[int, str], _Run] = {}

    def observe(self, step: int, rows: Sequence[Mapping[str, Any]]) -> list[HealthVerdict]:
        """Judge and keep the rows of one monitored step; return the verdicts that began to count at this step."""
        confirmed: list[_Run] = []
        held: set[tuple[int, str]] = set()
        for row in rows:
            layer = int(row["layer"])
            self.names.setdefault(layer, str(row.get("name", layer)))
            self.activations.setdefault(layer, str(row.get("activation", "")))
            verdict = step_verdict(row, self.thresholds)
            self.history.append({**row, "step": step, "verdict": verdict})
            kinds = [verdict] if verdict not in ("healthy", "n/a", "nonfinite") else []
            ratio = row.get("update_ratio")
            if ratio is not None and ratio > self.max_update_ratio:
                kinds.append("large_updates")
            for kind in kinds:
                held.add((layer, kind))
                run = self._open.get((layer, kind))
                if run is None:
                    run = self._open[(layer, kind)] = _Run(layer, kind, step)
                    self._runs.append(run)
                else:
                    run.count, run.missed, run.missed_from = run.count + 1, 0, None
                if not run.confirmed and run.count >= self.patience:
                    run.confirmed = True
                    confirmed.append(run)
        for key in [key for key in self._open if key not in held]:
            # A verdict that counted ends once it is absent as long as it had to hold to count (a fraction
            # hovering at its threshold is one spell, not many).
            run = self._open[key]
            run.missed += 1
            run.missed_from = step if run.missed_from is None else run.missed_from
            if not run.confirmed or run.missed >= self.patience:
                del self._open[key]
                run.ended = run.missed_from
                if not run.confirmed:
                    self._runs.remove(run)
        return [self._verdict(group) for group in _groups(confirmed)]

    def record_nonfinite(self, step: int, where: str, layers: Sequence[int] = ()) -> HealthVerdict | None:
        """Keep the first non-finite value (``where`` names it: "layer 7 (12: Linear) activations"); return the
        verdict the first time, None after."""
        if self.nonfinite is not None:
            return None
        self.nonfinite = HealthVerdict(
            "nonfinite",
            tuple(layers),
            step,
            None,
            math.nan,
            f"first non-finite value: {where} at step {step:,}",
            "lower the learning rate or clip gradients (torch.nn.utils.clip_grad_norm_); look for log(0), a division "
            "by zero or a float16 overflow",
        )
        return self.nonfinite

    def verdicts(self) -> list[HealthVerdict]:
        """Every verdict that counted, grouped over layers whose spells overlap, most severe first, then by step."""
        found = [self._verdict(group) for group in _groups([r for r in self._runs if r.confirmed])]
        if self.nonfinite is not None:
            found.append(self.nonfinite)
        return sorted(found, key=lambda v: (TIMELINE_VERDICTS.index(v.verdict), v.began, v.layers))

    def recommendation(self) -> Recommendation:
        """The init scheme for the hidden layers' activations, as the one-point diagnosis recommends it."""
        hidden = [a for layer, a in sorted(self.activations.items()) if a not in ("logits", "")]
        known = [a if a in ("relu", "leaky_relu", "tanh", "sigmoid", "linear") else "relu" for a in hidden]
        return recommend_for(known)

    # ---------------------------------------------------------------- messages
    def _verdict(self, runs: list[_Run]) -> HealthVerdict:
        kind = runs[0].verdict
        layers = tuple(sorted({r.layer for r in runs}))
        began = min(r.began for r in runs)
        ended = None if any(r.ended is None for r in runs) else max(r.ended for r in runs if r.ended is not None)
        rows = [
            row
            for row in self.history.rows()
            if row["layer"] in layers and row["step"] >= began and (ended is None or row["step"] < ended)
        ]
        words = Wording(self.history, self.thresholds, self.max_update_ratio)
        value, detail = words.detail(kind, [row for row in rows if words.holds(row, kind)], began)
        where = f"{'layers' if len(layers) > 1 else 'layer'} {layer_ranges(list(layers))}"
        if len(layers) == 1:
            where += f" ({self.names[layers[0]]})"
        message = f"{TITLES[kind]} in {where} of {len(self.names)} since step {began:,}: {detail}"
        return HealthVerdict(kind, layers, began, ended, value, message, fix(kind, self.recommendation()))


def _groups(runs: list[_Run]) -> list[list[_Run]]:
    """Runs of one verdict whose spells overlap in time, merged (layers 12-20 vanishing together: one verdict)."""
    groups: list[list[_Run]] = []
    for kind in TIMELINE_VERDICTS:
        current: list[_Run] = []
        end: float = -math.inf
        for run in sorted((r for r in runs if r.verdict == kind), key=lambda r: r.began):
            if current and run.began < end:
                current.append(run)
            else:
                if current:
                    groups.append(current)
                current, end = [run], -math.inf
            end = max(end, math.inf if run.ended is None else run.ended)
        if current:
            groups.append(current)
    return groups
