"""Short series for tanh and coth near 0, exact to the dtype's precision: the structure-aware check computes tiny
changes of tanh activations as ``tanh(a + d) - tanh(a)`` without cancellation."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["coth_bound", "series_terms", "tanh_series"]

A = NDArray[Any]


def coth_bound(dtype: np.dtype[Any]) -> float:
    """Largest ``|u|`` for which ``coth u = 1/u + u/3 - u^3/45`` is exact to the dtype's precision: the next term,
    ``2u^5/945``, is then below half an ulp of ``1/u``."""
    return float((945 * float(np.finfo(dtype).eps) / 4) ** (1 / 6))


def series_terms(largest: float, dtype: np.dtype[Any]) -> int:
    """How many terms of ``tanh u = u - u^3/3 + 2u^5/15 - 17u^7/315 + ...`` give ``tanh u`` to the dtype's precision
    for every ``|u| <= largest``: 2 or 3, or 0 when more would be needed.

    Stopping after ``u^3`` errs by at most ``2u^4/15`` relative, after ``u^5`` by ``17u^6/315``; each is used only
    where that stays below half an ulp.
    """
    eps = float(np.finfo(dtype).eps)
    if largest <= (7.5 * eps / 2) ** 0.25:
        return 2
    if largest <= (315 * eps / 34) ** (1 / 6):
        return 3
    return 0


def tanh_series(u: A, terms: int, *, out: A, scratch: A) -> A:
    """``tanh u`` into ``out`` from the first 2 or 3 terms of its series (see :func:`series_terms`)."""
    square = np.multiply(u, u, out=scratch)
    if terms == 2:
        square *= -1.0 / 3.0
    else:
        np.multiply(square, 2.0 / 15.0, out=out)
        out -= 1.0 / 3.0
        square *= out
    square += 1.0
    return np.multiply(square, u, out=out)
