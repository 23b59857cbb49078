"""Validation at the public boundary: one helper per kind of argument, each error naming the argument."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["check_array", "check_choice", "check_in_range", "check_positive_int", "describe"]


def describe(value: Any) -> str:
    """A short description of what came, for error messages (an array by shape and dtype, not its content)."""
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_array(
    x: Any,
    *,
    name: str,
    ndim: int | tuple[int, ...] | None = None,
    finite: bool = True,
    numeric: bool = True,
) -> NDArray[Any]:
    """Return ``x`` as an ndarray after checking it, or raise ValueError naming ``name``.

    Parameters
    ----------
    x : array_like
        What the caller passed.
    name : str
        The argument's name, used in messages.
    ndim : int or tuple of int, optional
        Allowed numbers of dimensions.
    finite : bool
        Reject NaN and infinity (naming how many entries and the first position).
    numeric : bool
        Reject non-numeric dtypes (strings, objects).

    Examples
    --------
    >>> check_array([[1.0, 2.0]], name="X", ndim=2).shape
    (1, 2)
    """
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected an array, got {describe(x)} ({exc})") from None
    if numeric and not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            expected = " or ".join(str(d) for d in allowed)
            raise ValueError(f"{name}: expected {expected} dimensions, got shape {arr.shape}")
    if finite and np.issubdtype(arr.dtype, np.inexact):
        bad = ~np.isfinite(arr)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{name}: expected finite values, got {int(bad.sum())} NaN/inf entries (first at index {first})"
            )
    return arr


def check_choice(value: Any, *, name: str, allowed: Collection[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise ValueError listing the choices.

    Examples
    --------
    >>> check_choice("relu", name="hidden", allowed=("relu", "tanh"))
    'relu'
    """
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}: got {value!r}; expected one of {sorted(allowed)}")
    return value


def check_in_range(
    value: Any,
    *,
    name: str,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it lies in the interval, else raise ValueError naming the interval.

    Examples
    --------
    >>> check_in_range(0.5, name="keep_prob", low=0.0, high=1.0, low_open=True)
    0.5
    """
    # An infinite bound is never in the interval (the value must be finite): show it open.
    opening = "(" if low_open or math.isinf(low) else "["
    closing = ")" if high_open or math.isinf(high) else "]"
    interval = f"{opening}{low}, {high}{closing}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number in {interval}, got {describe(value)}")
    v = float(value)
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if not np.isfinite(v) or below or above:
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return v


def check_positive_int(value: Any, *, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer >= ``minimum``, else raise ValueError.

    Examples
    --------
    >>> check_positive_int(3, name="iterations")
    3
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {describe(value)}")
    return int(value)
