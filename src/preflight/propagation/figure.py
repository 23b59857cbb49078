"""The propagation report's figure: forward scale, backward scale, per-layer gain and saturated/dead fraction.

Drawn on a pyplot-free matplotlib Figure (extra ``plot``), so it serves both ``report.plot(directory)`` and the small
inline plot of the report's ``_repr_html_`` in a notebook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from preflight._util.figures import new_figure

if TYPE_CHECKING:
    from preflight.propagation.report import PropagationReport

__all__ = ["draw"]


def _log_axis(ax: Any) -> None:
    """Log scale whose labels neither crowd nor vanish: decades over a wide range, 1-2-5 steps over a narrow one.

    matplotlib's default labels minor ticks (2 x 10^0, 3 x 10^0, ...) over a narrow range, and they ran into the
    next panel; decades alone leave a panel spanning less than one decade without a single label.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    low, high = ax.get_ylim()
    narrow = low > 0 and high / low < 100
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,), numticks=7))
    if narrow:
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.2g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def draw(report: PropagationReport, *, figsize: tuple[float, float] = (17, 3.9), fontsize: float = 9) -> Any:
    """A matplotlib Figure with four panels, one point per layer; the logits layer is marked apart.

    The logits layer has no activation, so its "std of the activations" is the std of the logits themselves: a
    different quantity, drawn as a lone marker with its own legend entry, not joined to the hidden layers' line.
    """
    figure = new_figure(figsize=figsize, layout="constrained")
    axes = figure.subplots(1, 4)
    layers = list(report.layers)
    hidden, output = layers[:-1], layers[-1]
    depth = [s.layer for s in layers]
    ax = axes[0]
    ax.plot(depth, [s.pre_rms for s in layers], "o-", ms=3, label="rms(Z), measured")
    ax.plot(depth, [s.predicted_rms for s in layers], "--", label="rms(Z), mean field")
    if hidden:
        ax.plot([s.layer for s in hidden], [s.std for s in hidden], "s:", ms=3, label="std(A), hidden layers")
    ax.plot([output.layer], [output.std], "D", color="black", ms=4, label="std of the logits (no activation)")
    ax.set(xlabel="layer", ylabel="scale of the signal", title="forward")
    ax = axes[1]
    ax.plot(depth, [s.delta_norm for s in layers], "o-", ms=3, label="|dL/dZ|")
    ax.plot(depth, [s.weight_grad_norm for s in layers], "s:", ms=3, label="|dL/dW|")
    ax.set(xlabel="layer", ylabel="gradient norm", title="backward")
    gains = [s for s in layers if s.chi_measured is not None and s.chi_predicted is not None]
    ax = axes[2]
    ax.plot([s.layer for s in gains], [s.chi_measured for s in gains], "o-", ms=3, label="measured")
    ax.plot([s.layer for s in gains], [s.chi_predicted for s in gains], "--", label="mean field")
    ax.axhline(1.0, color="grey", lw=0.8, label="chi = 1 (steady)")
    ax.set(xlabel="layer", ylabel="chi = |dL/dZ_l|^2 / |dL/dZ_l+1|^2", title="per-layer gain")
    for axis in axes[:3]:
        _log_axis(axis)
    ax = axes[3]
    for name, values in (
        ("saturated", [s.saturated_fraction for s in layers]),
        ("dead", [s.dead_fraction for s in layers]),
    ):
        points = [(s.layer, v) for s, v in zip(layers, values, strict=True) if v is not None]
        if points:
            ax.plot(*zip(*points, strict=True), "o-", ms=3, label=name)
    ax.set(ylim=(-0.02, 1.02), xlabel="layer", ylabel="fraction of units", title="saturated / dead")
    for axis in axes:
        axis.xaxis.get_major_locator().set_params(integer=True)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=fontsize - 1)
        axis.title.set_fontsize(fontsize + 1)
        axis.xaxis.label.set_fontsize(fontsize)
        axis.yaxis.label.set_fontsize(fontsize)
        axis.tick_params(labelsize=fontsize - 1)
    figure.suptitle(
        f"verdict: {report.verdict}; recommended init: {report.recommendation.scheme}", fontsize=fontsize + 2
    )
    return figure
