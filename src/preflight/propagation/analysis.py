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
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from preflight._util.aliases import Params
from preflight._util.text import format_table
from preflight._util.validation import check_in_range
from preflight._util.warn import warn
from preflight.nn.activations import ACTIVATIONS
from preflight.nn.network import Network
from preflight.propagation.stats import norm, ratio, rms, sigma_w2

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

Verdict = Literal["healthy", "vanishing", "exploding", "saturated", "dead"]
#: Verdicts in the order they are tested (and break ties in the overall verdict).
VERDICTS: tuple[str, ...] = ("dead", "saturated", "exploding", "vanishing", "healthy")
A = NDArray[Any]
#: Grids for E[f(h)], h ~ N(0, q), by the trapezoid rule: one fixed in h where the activations bend (|h| <= 20),
#: one scaled with sqrt(q) over +-10 standard deviations, so a wide Gaussian (q ~ 500) still resolves the narrow
#: spike of tanh' and a narrow one (q ~ 1e-60) is sampled by 2000 points. Even counts keep 0 off the grid, so the
#: ReLU step falls inside one cell and is integrated to first order. Relative error ~1e-5 (closed forms).
_FIXED_GRID = np.linspace(-20.0, 20.0, 4000)
_UNIT_GRID = np.linspace(-10.0, 10.0, 2000)
#: Below this variance the Gaussian is taken as this narrow one (the limit q -> 0 of the expectations).
_TINY_Q = 1e-300

#: Scheme that puts each activation at (or nearest to) chi = 1, and why.
_RECOMMENDED: dict[str, tuple[str, str]] = {
    "relu": ("he", "ReLU halves the variance, He's sigma_w^2 = 2 restores it (chi = 1)"),
    "leaky_relu": ("he", "He's sigma_w^2 = 2 (exactly 2 / (1 + slope^2): preflight.init.he(nonlinearity=...))"),
    "tanh": ("lecun", "tanh is linear near 0, LeCun's sigma_w^2 = 1 gives chi = 1 there"),
    "sigmoid": ("glorot", "sigmoid is never at chi = 1 (E[phi'^2] <= 1/16); Glorot is the classic choice"),
    "linear": ("orthogonal", "a linear layer keeps norms exactly when its weights are orthogonal"),
}


class PropagationWarning(UserWarning):
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

    def to_json(self) -> dict[str, Any]:
        """Plain dicts and numbers (None where a figure does not apply)."""
        return {
            "verdict": self.verdict,
            "recommendation": asdict(self.recommendation),
            "learning_rate": self.learning_rate,
            "thresholds": asdict(self.thresholds),
            "layers": [asdict(s) for s in self.layers],
        }

    def __str__(self) -> str:
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
        table = format_table(headers, rows, title="Signal propagation, layer by layer (MF: mean-field prediction)")
        lines = [table, "", f"verdict: {self.verdict}"]
        for verdict in VERDICTS[:-1]:
            if self.layers_with(verdict):
                lines.append(f"  {verdict}: layers {layer_ranges(self.layers_with(verdict))}")
        lines.append(f"recommended init: {self.recommendation.scheme} ({self.recommendation.reason})")
        return "\n".join(lines)

    def plot(self, directory: str | Path) -> list[Path]:
        """``propagation.png``: forward scale, backward scale, chi and saturation per layer (needs the plot extra)."""
        from preflight._util.figures import pyplot, save_figure

        plt = pyplot()
        depth = [s.layer for s in self.layers]
        fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
        axes[0].plot(depth, [s.pre_rms for s in self.layers], "o-", ms=3, label="measured rms(Z)")
        axes[0].plot(depth, [s.predicted_rms for s in self.layers], "--", label="mean field")
        axes[0].plot(depth, [s.std for s in self.layers], "s:", ms=3, label="std(A)")
        axes[0].set(yscale="log", xlabel="layer", title="forward")
        axes[1].plot(depth, [s.delta_norm for s in self.layers], "o-", ms=3, label="|dL/dZ|")
        axes[1].plot(depth, [s.weight_grad_norm for s in self.layers], "s:", ms=3, label="|dL/dW|")
        axes[1].set(yscale="log", xlabel="layer", title="backward")
        hidden = [s for s in self.layers if s.chi_measured is not None]
        axes[2].plot([s.layer for s in hidden], [s.chi_measured for s in hidden], "o-", ms=3, label="measured")
        axes[2].plot([s.layer for s in hidden], [s.chi_predicted for s in hidden], "--", label="mean field")
        axes[2].axhline(1.0, color="grey", lw=0.8)
        axes[2].set(yscale="log", xlabel="layer", title="per-layer gain chi")
        for name, values in (
            ("saturated", [s.saturated_fraction for s in self.layers]),
            ("dead", [s.dead_fraction for s in self.layers]),
        ):
            points = [(d, v) for d, v in zip(depth, values, strict=True) if v is not None]
            if points:
                axes[3].plot(*zip(*points, strict=True), "o-", ms=3, label=name)
        axes[3].set(ylim=(-0.02, 1.02), xlabel="layer", title="saturated / dead fraction")
        for ax in axes:
            ax.legend(fontsize=8) if ax.get_legend_handles_labels()[0] else None
        fig.suptitle(f"verdict: {self.verdict}; recommended init: {self.recommendation.scheme}")
        return [save_figure(fig, Path(directory) / "propagation.png")]


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


def mean_field(activation: str, q: float) -> tuple[float, float]:
    """``(E[phi(h)^2], E[phi'(h)^2])`` for ``h ~ N(0, q)``, by the trapezoid rule on the union of a fixed grid and
    one scaled to ``sqrt(q)`` (kinks such as ReLU's at 0 sit on grid points): within 1e-4 of the closed forms for
    ReLU and linear, and of Monte Carlo for tanh and sigmoid (tests/test_propagation.py).

    Examples
    --------
    >>> [round(v, 6) for v in mean_field("relu", 2.0)]
    [1.0, 0.5]
    """
    phi = ACTIVATIONS[activation]
    q = max(float(q), _TINY_Q)
    h = np.union1d(_FIXED_GRID, math.sqrt(q) * _UNIT_GRID)
    # Zero from 10 standard deviations on (the scaled grid ends there), so the wide cells of the fixed grid
    # carry no stray mass when the Gaussian is far narrower than they are.
    density = np.where(np.abs(h) < 10.0 * math.sqrt(q), np.exp(-h * h / (2 * q)), 0.0)
    a = phi.forward(h)
    values = np.stack([density, a * a * density, phi.derivative(h, a) ** 2 * density])
    integrals = ((values[:, 1:] + values[:, :-1]) * np.diff(h)).sum(axis=1)
    return float(integrals[1] / integrals[0]), float(integrals[2] / integrals[0])


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


# ---------------------------------------------------------------------- helpers


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


def saturated_fraction(activation: str, a: A, level: float = 0.99) -> float | None:
    """Fraction of a bounded activation's outputs beyond ``level`` of its range (None for unbounded ones).

    tanh counts ``|a| > level``; sigmoid counts ``|2a - 1| > level``, the same in its (0, 1) range.

    Examples
    --------
    >>> saturated_fraction("tanh", np.tanh(np.array([0.1, 5.0]))), saturated_fraction("relu", np.ones(3))
    (0.5, None)
    """
    name = activation
    if name == "tanh":
        return float(np.mean(np.abs(a) > level))
    if name == "sigmoid":
        return float(np.mean(np.abs(2 * a.astype(np.float64) - 1) > level))
    return None


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
