"""Figures with matplotlib (extra ``plot``), drawn off-screen and saved atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from preflight._util.files import atomic_write_bytes
from preflight._util.optional import require

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend, or MissingExtraError naming the ``plot`` extra."""
    matplotlib = require("matplotlib", extra="plot", purpose="Plotting")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", extra="plot", purpose="Plotting")


def save_figure(figure: Any, path: str | Path, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(figure)
    return atomic_write_bytes(path, buffer.getvalue())
