"""Figures with matplotlib (extra ``plot``), drawn off-screen and saved atomically as PNG.

Figures are built as ``matplotlib.figure.Figure`` objects, not through pyplot: pyplot keeps a global list of open
figures and a global backend, and switching that backend to Agg inside a notebook would stop the user's own
``plt.show()`` from displaying anything.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from typing import Any

from preflight._util.files import atomic_write_bytes
from preflight._util.optional import require

__all__ = ["has_matplotlib", "new_figure", "png_bytes", "pyplot", "save_figure"]


def has_matplotlib() -> bool:
    """Whether matplotlib (extra ``plot``) is installed, without importing it.

    Examples
    --------
    >>> isinstance(has_matplotlib(), bool)
    True
    """
    return importlib.util.find_spec("matplotlib") is not None


def new_figure(*, figsize: tuple[float, float], **options: Any) -> Any:
    """A matplotlib Figure that belongs to no pyplot state (MissingExtraError naming ``plot`` without matplotlib).

    Examples
    --------
    >>> new_figure(figsize=(2, 1)).get_size_inches().tolist()
    [2.0, 1.0]
    """
    figure_module = require("matplotlib.figure", extra="plot", purpose="Plotting")
    return figure_module.Figure(figsize=figsize, **options)


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend, or MissingExtraError naming the ``plot`` extra."""
    matplotlib = require("matplotlib", extra="plot", purpose="Plotting")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", extra="plot", purpose="Plotting")


def png_bytes(figure: Any, *, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (tight bounding box)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_figure(figure: Any, path: str | Path, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically (and close it if pyplot holds it)."""
    data = png_bytes(figure, dpi=dpi)
    pyplot_module = sys.modules.get("matplotlib.pyplot")
    if pyplot_module is not None:
        pyplot_module.close(figure)
    return atomic_write_bytes(path, data)
