"""Signal propagation: per-layer statistics of activations and gradients, verdicts (healthy, vanishing, exploding,
saturated), the mean-field prediction, and the initialization to recommend."""

from __future__ import annotations

from preflight.propagation.analysis import analyze, recommend, recommend_for
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

__all__ = [
    "VERDICTS",
    "LayerRecord",
    "LayerStats",
    "PropagationReport",
    "PropagationWarning",
    "Recommendation",
    "Thresholds",
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
]
