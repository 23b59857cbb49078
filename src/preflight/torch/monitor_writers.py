"""Where a :class:`preflight.torch.Monitor` sends each monitored step besides its history: TensorBoard, or any
callable ``listener(step, rows, new_verdicts)`` (the Lightning callback logs through the trainer's logger with one)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from preflight._util.optional import require
from preflight._util.validation import describe
from preflight.propagation import HealthVerdict

__all__ = ["LOGGED", "Listener", "scalars", "tensorboard_listener"]

#: What a listener is called with after each monitored step: the step, its rows, the verdicts new at it.
Listener = Callable[[int, Sequence[dict[str, Any]], Sequence[HealthVerdict]], None]
#: The statistics logged as scalars, one per layer.
LOGGED: tuple[str, ...] = (
    "std",
    "saturated_fraction",
    "dead_fraction",
    "delta_norm",
    "weight_grad_norm",
    "update_ratio",
    "forward_ratio",
    "backward_ratio",
)


def scalars(rows: Sequence[dict[str, Any]], prefix: str = "preflight") -> dict[str, float]:
    """The figures of one monitored step as ``{"preflight/std/layer 03 (net.4)": value}`` (measured ones only).

    Examples
    --------
    >>> scalars([{"layer": 3, "name": "net.4", "std": 0.5, "dead_fraction": None}])
    {'preflight/std/layer 03 (net.4)': 0.5}
    """
    out = {}
    for row in rows:
        label = f"layer {row['layer']:02d} ({row.get('name', '')})"
        for statistic in LOGGED:
            value = row.get(statistic)
            if value is not None:
                out[f"{prefix}/{statistic}/{label}"] = float(value)
    return out


def tensorboard_listener(target: Any) -> Listener:
    """A listener writing scalars and verdicts to TensorBoard: ``target`` is a log directory (a SummaryWriter is
    made there; needs the tensorboard package) or an object with ``add_scalar`` and ``add_text``."""
    if isinstance(target, (str, Path)):
        require("tensorboard", extra="tensorboard", purpose="Monitor(tensorboard=...)")
        module = require("torch.utils.tensorboard", extra="tensorboard", purpose="Monitor(tensorboard=...)")
        target = module.SummaryWriter(log_dir=str(target))
    if not callable(getattr(target, "add_scalar", None)) or not callable(getattr(target, "add_text", None)):
        raise ValueError(
            f"tensorboard: expected a log directory or a SummaryWriter (add_scalar, add_text), got {describe(target)}"
        )
    writer = target

    def listener(step: int, rows: Sequence[dict[str, Any]], verdicts: Sequence[HealthVerdict]) -> None:
        for tag, value in scalars(rows).items():
            writer.add_scalar(tag, value, step)
        for verdict in verdicts:
            writer.add_text("preflight/verdicts", f"{verdict.message}\n\nfix: {verdict.fix}", step)

    return listener
