"""Small float64 summaries of arrays shared by the NumPy and PyTorch propagation diagnostics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["norm", "ratio", "rms", "sigma_w2"]


def norm(x: NDArray[Any]) -> float:
    """Euclidean norm of all entries, accumulated in float64.

    Examples
    --------
    >>> norm(np.array([3.0, 4.0], dtype=np.float32))
    5.0
    """
    return float(np.sqrt(np.sum(np.square(x, dtype=np.float64))))


def rms(x: NDArray[Any]) -> float:
    """Root mean square of all entries, accumulated in float64.

    Examples
    --------
    >>> rms(np.array([1.0, -1.0, 1.0, -1.0]))
    1.0
    """
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def ratio(numerator: Any, denominator: Any) -> float:
    """``numerator / denominator`` with ``0 / 0 = 0`` and ``x / 0 = inf``: a signal that died is not an error.

    Examples
    --------
    >>> ratio(1, 4), ratio(0.0, 0.0), ratio(2.0, 0.0)
    (0.25, 0.0, inf)
    """
    top, bottom = float(numerator), float(denominator)
    if bottom == 0.0:
        return 0.0 if top == 0.0 else math.inf
    return top / bottom


def sigma_w2(w: NDArray[Any]) -> float:
    """``fan_in * mean(W^2)`` of a weight of shape (fan_out, fan_in): the weight variance in mean-field units.

    Examples
    --------
    >>> sigma_w2(np.full((3, 4), 0.5))
    1.0
    """
    return float(np.mean(np.square(w, dtype=np.float64))) * int(w.shape[1])
