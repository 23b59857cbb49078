"""Per-layer statistics of a real model (torch, JAX) from what its adapter measured: one :class:`LayerRecord` per
layer in, the report's :class:`~preflight.propagation.LayerStats` (with verdicts and mean-field figures) out, so
every adapter judges a layer exactly as :func:`preflight.propagation.analyze` does."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.propagation.mean_field import PHI, mean_field, saturated_fraction
from preflight.propagation.report import LayerStats, Thresholds, layer_verdict
from preflight.propagation.stats import norm, ratio, rms

__all__ = ["MEAN_FIELD_ACTIVATIONS", "LayerRecord", "dead_fraction", "layer_stats"]

#: Activations the mean-field recursion knows; any other ReLU-like one is read as ReLU.
MEAN_FIELD_ACTIVATIONS = tuple(PHI)


@dataclass(frozen=True)
class LayerRecord:
    """What an adapter measured on one layer (float64 NumPy arrays).

    ``activation``: a preflight name (a key of :data:`preflight.propagation.mean_field.PHI`); ``z`` the layer's
    output before the activation, ``a`` after it; ``weight`` and ``fan_in`` give sigma_w^2 = fan_in mean(W^2);
    ``delta_norm`` is ``||dL/dZ||``; ``input_grad_norm`` is ``||dL/dX||`` for the layer's input X (NaN if not
    measured).
    """

    activation: str
    z: NDArray[Any]
    a: NDArray[Any]
    weight: NDArray[Any]
    fan_in: int
    weight_grad: NDArray[Any]
    delta_norm: float
    input_grad_norm: float
    channel_axis: int = -1


def dead_fraction(z: NDArray[Any], channel_axis: int) -> float:
    """Fraction of units (features, or channels of a conv) never active on the batch.

    Examples
    --------
    >>> dead_fraction(np.array([[1.0, -1.0], [2.0, -3.0]]), -1)
    0.5
    """
    moved = np.moveaxis(z, channel_axis, -1).reshape(-1, z.shape[channel_axis])
    return float(np.mean(np.all(moved <= 0, axis=0)))


def layer_stats(
    records: Sequence[LayerRecord], input_rms: float, learning_rate: float, thresholds: Thresholds
) -> list[LayerStats]:
    """The report's statistics for each layer: the last one is the logits, the others hidden layers.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> z = rng.standard_normal((64, 8))
    >>> r = LayerRecord("tanh", z, np.tanh(z), np.full((8, 8), 0.35), 8, np.ones((8, 8)), 1.0, 1.0)
    >>> [s.verdict for s in layer_stats([r, r], 1.0, 0.01, Thresholds())]
    ['healthy', 'healthy']
    """
    second_moment, out = input_rms**2, []
    count = len(records)
    sigma = [float(np.mean(np.square(r.weight, dtype=np.float64))) * r.fan_in for r in records]
    for i, r in enumerate(records):
        hidden = i < count - 1
        name = (r.activation if r.activation in MEAN_FIELD_ACTIVATIONS else "relu") if hidden else "logits"
        q = sigma[i] * second_moment
        chi_measured = chi_predicted = None
        if hidden:
            second_moment, gain = mean_field(name, q)
            chi_measured = ratio(r.delta_norm**2, records[i + 1].delta_norm ** 2)
            chi_predicted = sigma[i + 1] * gain
        grad_norm = records[i + 1].input_grad_norm if hidden else r.delta_norm
        stats: dict[str, Any] = dict(
            layer=i + 1, activation=name, sigma_w2=sigma[i], mean=float(np.mean(r.a)), std=float(np.std(r.a)),
            pre_rms=rms(r.z), predicted_rms=math.sqrt(q),
            saturated_fraction=saturated_fraction(name, r.a, thresholds.saturation_level),
            dead_fraction=dead_fraction(r.z, r.channel_axis) if name == "relu" else None, delta_norm=r.delta_norm,
            activation_grad_norm=grad_norm, weight_grad_norm=norm(r.weight_grad),
            update_ratio=learning_rate * ratio(norm(r.weight_grad), norm(r.weight)),
            chi_measured=chi_measured, chi_predicted=chi_predicted, forward_ratio=ratio(rms(r.z), input_rms),
            backward_ratio=ratio(r.delta_norm, records[-1].delta_norm),
        )  # fmt: skip
        out.append(LayerStats(**stats, verdict=layer_verdict(stats, thresholds)))
    return out
