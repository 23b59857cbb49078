"""Signal propagation through the reference network: per-layer forward and backward statistics, and verdicts.

For a network, its parameters and a batch, :func:`analyze` runs one forward and one backward pass (no dropout) and
measures, layer by layer:

- forward: mean and std of the activations ``A_l = phi(Z_l)`` (the logits for the output layer), the root mean
  square of the pre-activations ``Z_l``, the fraction of saturated tanh/sigmoid activations and of dead ReLU units;
- backward: the norms of ``dL/dZ_l`` (the backpropagated error), ``dL/dA_l`` and ``dL/dW_l``, and the
  update-to-weight ratio ``learning_rate * ||dL/dW_l|| / ||W_l||`` (rule of thumb: around 1e-3);
- beside them, the mean-field predictions (Poole et al. 2016, Schoenholz et al. 2017): the second moment
  ``q_l`` of the pre-activations from the recursion ``q_{l+1} = sigma_w^2 E[phi(h)^2] + sigma_b^2`` with
  ``h ~ N(0, q_l)``, and the per-layer backward gain ``chi_l = sigma_w^2 E[phi'(h)^2]``, where ``sigma_w^2`` is
  ``fan_in * mean(W_{l+1}^2)`` of the next layer. The measured gain is ``||dL/dZ_l||^2 / ||dL/dZ_{l+1}||^2``.
  ReLU with sigma_w^2 = 2 (He) and tanh with sigma_w^2 = 1 (LeCun) sit at chi = 1.

Verdicts, first match wins (thresholds in :class:`Thresholds`, defaults in brackets):

- ``dead``: a ReLU layer where a fraction >= ``dead`` [0.5] of the units is never active on the batch;
- ``saturated``: a tanh/sigmoid layer where a fraction >= ``saturated`` [0.3] of the activations has
  ``|a| > saturation_level`` [0.99] (sigmoid measured as ``2a - 1 = tanh(z/2)``, so a outside [0.005, 0.995]);
- ``exploding``: the forward ratio ``F_l = rms(Z_l) / rms(X)``, the backward ratio
  ``B_l = ||dL/dZ_l|| / ||dL/dZ_L||`` or their product above ``exploding`` [100];
- ``vanishing``: ``F_l``, ``B_l`` or ``F_l B_l`` below ``vanishing`` [0.01]. The product matters because the weight
  gradient ``dL/dW_l = dL/dZ_l^T A_{l-1}`` carries both: with ReLU and 1/n every layer of a 20-layer network sees
  ``F_l B_l ~ 2^-10`` even where neither ratio alone has fallen below 0.01;
- ``healthy`` otherwise.

The overall verdict is the most frequent verdict among unhealthy layers (ties by the order above), ``healthy`` when
every layer is. Doubtful layers raise a :class:`PropagationWarning` (one per verdict), never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.aliases import Params
from preflight._util.blas import limit_blas_threads
from preflight._util.validation import check_in_range
from preflight.nn.network import Network
from preflight.propagation.mean_field import mean_field, saturated_fraction
from preflight.propagation.report import (
    LayerStats,
    PropagationReport,
    Recommendation,
    Thresholds,
    check_thresholds,
    layer_verdict,
    overall_verdict,
)
from preflight.propagation.stats import norm, ratio, rms, sigma_w2

A = NDArray[Any]

__all__ = ["analyze", "recommend", "recommend_for"]

#: Scheme that puts each activation at (or nearest to) chi = 1, and why.
_RECOMMENDED: dict[str, tuple[str, str]] = {
    "relu": ("he", "ReLU halves the variance, He's sigma_w^2 = 2 restores it (chi = 1)"),
    "leaky_relu": ("he", "He's sigma_w^2 = 2 (exactly 2 / (1 + slope^2): preflight.init.he(nonlinearity=...))"),
    "tanh": ("lecun", "tanh is linear near 0, LeCun's sigma_w^2 = 1 gives chi = 1 there"),
    "sigmoid": ("glorot", "sigmoid is never at chi = 1 (E[phi'^2] <= 1/16); Glorot is the classic choice"),
    "linear": ("orthogonal", "a linear layer keeps norms exactly when its weights are orthogonal"),
    **{
        name: ("he", f"{name} is ReLU-like (the identity for large inputs, near 0 below): He's sigma_w^2 = 2")
        for name in ("gelu", "silu", "elu", "softplus")
    },
}


@limit_blas_threads
def analyze(
    network: Network,
    params: Params,
    X: Any,
    y: Any,
    *,
    learning_rate: float = 0.01,
    thresholds: Thresholds | None = None,
    warn: bool = True,
) -> PropagationReport:
    """Measure how the signal travels forward and backward through ``network`` on the batch ``(X, y)``.

    Parameters
    ----------
    network : Network
    params : dict of arrays
        The parameters to diagnose (not modified), float32 or float64; statistics are computed in float64.
    X, y : arrays
        A batch (a few hundred rows is plenty) and its labels, as for :meth:`Network.cost`.
    learning_rate : float
        For the update-to-weight ratio.
    thresholds : Thresholds, optional
        Where the verdicts start.
    warn : bool
        Emit a :class:`PropagationWarning` for each kind of doubtful layer.

    Returns
    -------
    PropagationReport

    Examples
    --------
    >>> net = Network([16] + [64] * 20 + [4], hidden="relu", output="softmax")
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((128, 16)), rng.integers(0, 4, 128)
    >>> analyze(net, net.init(0, "he"), X, y).verdict
    'healthy'
    >>> analyze(net, net.init(0, "lecun"), X, y, warn=False).verdict
    'vanishing'
    """
    learning_rate = check_in_range(learning_rate, name="learning_rate", low=0.0, high=math.inf, low_open=True)
    thresholds = check_thresholds(thresholds)
    network, params, X, y = network.as_rows(params, X, y)  # statistics read samples as rows, in either layout
    cache = network.trace(params, X)
    X = cache.inputs[0]
    targets = network.head.targets(y, m=X.shape[0], k=network.sizes[-1], dtype=X.dtype)
    deltas, activation_grads, weight_grads = _backward(network, params, cache.inputs, cache.logits, targets)
    input_rms = rms(X)
    predicted = _predicted_rms(network, params, input_rms)
    layers = []
    for layer in range(1, network.depth + 1):
        hidden = layer < network.depth
        z = cache.logits[layer - 1]
        a = cache.activations[layer - 1] if hidden else z
        name = network.hidden[layer - 1] if hidden else "logits"
        w = params[f"W{layer}"]
        chi_measured = chi_predicted = None
        if hidden:
            chi_measured = ratio(deltas[layer - 1] ** 2, deltas[layer] ** 2)
            q = predicted[layer - 1] ** 2
            chi_predicted = sigma_w2(params[f"W{layer + 1}"]) * mean_field(name, q)[1]
        stats = dict(
            layer=layer,
            activation=name,
            sigma_w2=sigma_w2(w),
            mean=float(np.mean(a, dtype=np.float64)),
            std=float(np.std(a, dtype=np.float64)),
            pre_rms=rms(z),
            predicted_rms=predicted[layer - 1],
            saturated_fraction=saturated_fraction(name, a, thresholds.saturation_level),
            dead_fraction=float(np.mean(np.all(z <= 0, axis=0))) if name == "relu" else None,
            delta_norm=deltas[layer - 1],
            activation_grad_norm=activation_grads[layer - 1],
            weight_grad_norm=weight_grads[layer - 1],
            update_ratio=learning_rate * ratio(weight_grads[layer - 1], norm(w)),
            chi_measured=chi_measured,
            chi_predicted=chi_predicted,
            forward_ratio=ratio(rms(z), input_rms),
            backward_ratio=ratio(deltas[layer - 1], deltas[-1]),
        )
        layers.append(LayerStats(**stats, verdict=layer_verdict(stats, thresholds)))  # type: ignore[arg-type]
    report = PropagationReport(
        tuple(layers), overall_verdict(layers), recommend(network, params), learning_rate, thresholds
    )
    if warn:
        report.warn()
    return report


def recommend(network: Network, params: Params | None = None) -> Recommendation:
    """The scheme that fits the hidden activations (LSUV when they are mixed), and how far the weights are from it.

    Examples
    --------
    >>> recommend(Network([4, 8, 1], hidden="relu")).scheme
    'he'
    """
    advice = recommend_for(network.hidden)
    if params is None or network.depth == 1 or advice.scheme == "lsuv":
        return advice
    variances = [sigma_w2(params[f"W{layer}"]) for layer in range(2, network.depth + 1)]
    spread = f"from {min(variances):.3g} to {max(variances):.3g}"
    return Recommendation(advice.scheme, f"{advice.reason}; these weights have sigma_w^2 = fan_in * mean(W^2) {spread}")


def recommend_for(activations: Sequence[str]) -> Recommendation:
    """The init scheme for hidden layers with these activations: one scheme per kind, LSUV when they are mixed.

    Examples
    --------
    >>> recommend_for(["tanh", "tanh"]).scheme, recommend_for(["relu", "tanh"]).scheme, recommend_for([]).scheme
    ('lecun', 'lsuv', 'orthogonal')
    """
    kinds = sorted(set(activations)) or ["linear"]
    if len(kinds) > 1:
        return Recommendation("lsuv", f"mixed activations {kinds}: LSUV scales each layer to unit output variance")
    if kinds[0] not in _RECOMMENDED:
        raise ValueError(f"activations: expected names among {sorted(_RECOMMENDED)}, got {kinds[0]!r}")
    return Recommendation(*_RECOMMENDED[kinds[0]])


def _backward(
    network: Network, params: Params, inputs: list[A], logits: list[A], targets: A
) -> tuple[list[float], ...]:
    """Norms of dL/dZ_l, dL/dA_l (dL/dZ_L for the output) and dL/dW_l, as nn.Network._backward computes them."""
    m = targets.shape[0]
    dtype = targets.dtype.type
    dz = network.head.delta(logits[-1], targets) / dtype(m)
    deltas, activation_grads, weight_grads = [], [], []
    da = dz
    for layer in range(network.depth, 0, -1):
        w = params[f"W{layer}"]
        deltas.append(norm(dz))
        activation_grads.append(norm(da))
        weight_grads.append(norm(dz.T @ inputs[layer - 1] + dtype(network.l2 / m) * w))
        if layer > 1:
            da = dz @ w
            z = logits[layer - 2]
            dz = da * network.activation(layer - 1).derivative(z, inputs[layer - 1])
    return deltas[::-1], activation_grads[::-1], weight_grads[::-1]


def _predicted_rms(network: Network, params: Params, input_rms: float) -> list[float]:
    """Mean-field rms of Z_l: q_1 = sigma_w^2 q_x + sigma_b^2, q_{l+1} = sigma_w^2 E[phi(h)^2] + sigma_b^2."""
    second_moment = input_rms**2
    out = []
    for layer in range(1, network.depth + 1):
        bias = params[f"b{layer}"]
        q = sigma_w2(params[f"W{layer}"]) * second_moment + float(np.mean(np.square(bias, dtype=np.float64)))
        out.append(math.sqrt(q))
        if layer < network.depth:
            second_moment = mean_field(network.hidden[layer - 1], q)[0]
    return out
