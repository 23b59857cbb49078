"""Signal propagation: per-layer statistics of activations and gradients, verdicts (healthy, vanishing, exploding,
saturated), the mean-field prediction, and the initialization to recommend; and the same verdicts over time, while a
network trains (:class:`Timeline`, :class:`HealthReport`, :class:`HealthCallback` for ``Network.fit``)."""

from __future__ import annotations

from preflight.propagation.analysis import analyze, recommend, recommend_for
from preflight.propagation.health import HealthReport, LayerInfo
from preflight.propagation.health_callback import HealthCallback
from preflight.propagation.history import COLUMNS, STATISTICS, HealthHistory
from preflight.propagation.layers import LayerRecord, dead_fraction, layer_stats
from preflight.propagation.mean_field import mean_field, saturated_fraction
from preflight.propagation.report import (
    VERDICTS,
    LayerStats,
    PropagationReport,
    PropagationWarning,
    Recommendation,
    Thresholds,
    check_thresholds,
    layer_ranges,
    layer_verdict,
    overall_verdict,
)
from preflight.propagation.timeline import (
    MAX_UPDATE_RATIO,
    TIMELINE_VERDICTS,
    UPDATE_RATIO_RULE_OF_THUMB,
    HealthVerdict,
    HealthWarning,
    Timeline,
    step_verdict,
)

__all__ = [
    "COLUMNS",
    "MAX_UPDATE_RATIO",
    "STATISTICS",
    "TIMELINE_VERDICTS",
    "UPDATE_RATIO_RULE_OF_THUMB",
    "VERDICTS",
    "HealthCallback",
    "HealthHistory",
    "HealthReport",
    "HealthVerdict",
    "HealthWarning",
    "LayerInfo",
    "LayerRecord",
    "LayerStats",
    "PropagationReport",
    "PropagationWarning",
    "Recommendation",
    "Thresholds",
    "Timeline",
    "analyze",
    "check_thresholds",
    "dead_fraction",
    "layer_ranges",
    "layer_stats",
    "layer_verdict",
    "mean_field",
    "overall_verdict",
    "recommend",
    "recommend_for",
    "saturated_fraction",
    "step_verdict",
]
