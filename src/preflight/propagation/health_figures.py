"""Figures of a training run's health (extra ``plot``): heat maps of layers x steps, and the verdict timeline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from preflight._util.figures import pyplot, save_figure
from preflight.propagation.history import HealthHistory
from preflight.propagation.timeline import HealthVerdict

__all__ = ["HEATMAPS", "VERDICT_COLORS", "plot_heatmaps", "plot_timeline"]

#: The heat maps drawn: (statistic, title, logarithmic colour scale). Saturated and dead fractions share a panel
#: (a layer has at most one of them).
HEATMAPS: tuple[tuple[str, str, bool], ...] = (
    ("std", "std of the activations", True),
    ("fraction", "saturated (tanh/sigmoid) or dead (ReLU) fraction", False),
    ("forward_ratio", "forward ratio rms(Z_l) / rms(X)", True),
    ("delta_norm", "|dL/dZ_l|", True),
    ("weight_grad_norm", "|dL/dW_l|", True),
    ("update_ratio", "update/weight ratio |dW| / |W| per step", True),
)
#: A colour per verdict of a layer at a monitored step.
VERDICT_COLORS: dict[str, str] = {
    "healthy": "#d9f2dd",
    "vanishing": "#9ecae1",
    "exploding": "#fdae6b",
    "saturated": "#bcbddc",
    "dead": "#636363",
    "nonfinite": "#d62728",
    "n/a": "#ffffff",
}


def _grid(history: HealthHistory, statistic: str) -> tuple[list[int], list[int], list[list[float]]]:
    if statistic != "fraction":
        return history.grid(statistic)
    layers, steps, saturated = history.grid("saturated_fraction")
    _, _, dead = history.grid("dead_fraction")
    merged = [
        [s if not math.isnan(s) else d for s, d in zip(a, b, strict=True)] for a, b in zip(saturated, dead, strict=True)
    ]
    return layers, steps, merged


def _extent(layers: list[int], steps: list[int]) -> list[float]:
    half = (steps[1] - steps[0]) / 2 if len(steps) > 1 else 0.5
    return [steps[0] - half, steps[-1] + half, layers[-1] + 0.5, layers[0] - 0.5]


def plot_heatmaps(history: HealthHistory, path: str | Path) -> Path:
    """One heat map of layers (rows, first at the top) x monitored steps (columns) per statistic in :data:`HEATMAPS`;
    blank where a figure does not apply or was not measured. Returns the PNG's path."""
    plt = pyplot()
    colors = _colors()
    fig, axes = plt.subplots(2, 3, figsize=(16, 7.5), squeeze=False)
    layers, steps = history.layers, history.steps
    for ax, (statistic, title, log) in zip(axes.flat, HEATMAPS, strict=True):
        ax.set(title=title, xlabel="step", ylabel="layer")
        if not steps:
            continue
        _, _, values = _grid(history, statistic)
        positive = [v for row in values for v in row if not math.isnan(v) and v > 0]
        norm: Any = None
        if log and positive:
            norm = colors.LogNorm(vmin=min(positive), vmax=max(max(positive), min(positive) * 1.0001))
            values = [[v if v > 0 else math.nan for v in row] for row in values]
        elif not log:
            norm = colors.Normalize(vmin=0.0, vmax=1.0)
        image = ax.imshow(values, aspect="auto", interpolation="nearest", extent=_extent(layers, steps), norm=norm)
        fig.colorbar(image, ax=ax)
    fig.suptitle("Training health, layer by layer and step by step")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_timeline(
    history: HealthHistory, verdicts: Sequence[HealthVerdict], path: str | Path, *, max_update_ratio: float
) -> Path:
    """Each layer's verdict at each monitored step (a coloured cell), updates above ``max_update_ratio`` marked x,
    the first non-finite value marked by a star, and above them the loss where it was given. Returns the PNG's
    path."""
    plt = pyplot()
    colors = _colors()
    losses = sorted(history.losses.items())
    if losses:
        fig, (top, ax) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True, gridspec_kw={"height_ratios": [1, 3]})
        top.plot([s for s, _ in losses], [v for _, v in losses], "-", lw=1)
        top.set(ylabel="loss", yscale="log" if all(v > 0 for _, v in losses) else "linear")
    else:
        fig, ax = plt.subplots(figsize=(12, 5))
        top = ax
    top.set(title="Verdicts over time")
    layers, steps = history.layers, history.steps
    if steps:
        names = list(VERDICT_COLORS)
        index = {(row["layer"], row["step"]): names.index(row["verdict"]) for row in history.rows()}
        cells = [[index.get((layer, step), names.index("n/a")) for step in steps] for layer in layers]
        cmap = colors.ListedColormap([VERDICT_COLORS[name] for name in names])
        ax.imshow(cells, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5,
                  extent=_extent(layers, steps))  # fmt: skip
        large = [
            (r["step"], r["layer"])
            for r in history.rows()
            if r["update_ratio"] is not None and r["update_ratio"] > max_update_ratio
        ]
        if large:
            ax.plot(*zip(*large, strict=True), "x", color="#b30000", ms=5, label="updates too large")
        for verdict in verdicts:
            if verdict.verdict == "nonfinite":
                ax.plot([verdict.began], [verdict.layers[0] if verdict.layers else layers[0]], "*", color="#d62728",
                        ms=14, label="first non-finite value")  # fmt: skip
        handles = [plt.Rectangle((0, 0), 1, 1, color=VERDICT_COLORS[n]) for n in names if n != "n/a"]
        extra, labels = ax.get_legend_handles_labels()
        ax.legend(handles + extra, [n for n in names if n != "n/a"] + labels, fontsize=8, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0))  # fmt: skip
    ax.set(xlabel="step", ylabel="layer")
    fig.tight_layout()
    return save_figure(fig, path)


def _colors() -> Any:
    """matplotlib.colors (the plot extra is already checked by :func:`pyplot`)."""
    import matplotlib.colors

    return matplotlib.colors
