"""Signal propagation: per-layer statistics of activations and gradients, verdicts (healthy, vanishing, exploding,
saturated), the mean-field prediction, and the initialization to recommend."""

from __future__ import annotations

from preflight.propagation.analysis import (
    VERDICTS,
    LayerStats,
    PropagationReport,
    PropagationWarning,
    Recommendation,
    Thresholds,
    analyze,
    check_thresholds,
    layer_ranges,
    layer_verdict,
    mean_field,
    overall_verdict,
    recommend,
    recommend_for,
    saturated_fraction,
)

__all__ = [
    "VERDICTS",
    "LayerStats",
    "PropagationReport",
    "PropagationWarning",
    "Recommendation",
    "Thresholds",
    "analyze",
    "check_thresholds",
    "layer_ranges",
    "layer_verdict",
    "mean_field",
    "overall_verdict",
    "recommend",
    "recommend_for",
    "saturated_fraction",
]
