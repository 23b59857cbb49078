"""The course's parameter vectors: dictionaries of ``W{l}``, ``b{l}`` raveled into one column, and back.

The course's gradient-checking exercise ravels its parameters into one column vector ``theta`` of shape (n, 1) in
the order ``W1, b1, W2, b2, ...`` (each array in C order), its gradients the same way from ``dW1, db1, ...``, and
cuts ``theta`` back into the dictionary. These functions do the same for any number of layers, so a learner's own
vectors compare with these entry by entry; ``vector_to_dictionary(theta)`` alone uses the exercise's shapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.aliases import Params
from preflight._util.validation import describe

__all__ = ["EXERCISE_SHAPES", "course_keys", "dictionary_to_vector", "gradients_to_vector", "vector_to_dictionary"]

A = NDArray[Any]
#: The shapes the course's ``vector_to_dictionary`` hard-codes: its N-D exercise, a [4, 5, 3, 1] network.
EXERCISE_SHAPES: dict[str, tuple[int, ...]] = {
    "W1": (5, 4),
    "b1": (5, 1),
    "W2": (3, 5),
    "b2": (3, 1),
    "W3": (1, 3),
    "b3": (1, 1),
}
_LAYER = re.compile(r"[Wb]([1-9][0-9]*)")


def course_keys(names: Any, *, prefix: str = "") -> list[str]:
    """The course's order of parameter names, ``W1, b1, W2, b2, ..., WL, bL``, for the layers among ``names``.

    Parameters
    ----------
    names : iterable of str
        Keys of a parameter (or, with ``prefix="d"``, gradient) dictionary; other keys (``dZ1``, ...) are left out.
    prefix : str
        ``"d"`` for gradients (``dW1, db1, ...``).

    Raises
    ------
    ValueError
        A layer without its ``W`` or its ``b``, or layers that do not run 1, 2, ..., L.

    Examples
    --------
    >>> course_keys(["b2", "W1", "W2", "b1"]), course_keys(["dZ1", "dW1", "db1"], prefix="d")
    (['W1', 'b1', 'W2', 'b2'], ['dW1', 'db1'])
    """
    keys = {str(n) for n in names}
    layers = sorted(
        {int(match.group(1)) for n in keys if n.startswith(prefix) and (match := _LAYER.fullmatch(n[len(prefix) :]))}
    )
    expected = [f"{prefix}{kind}{layer}" for layer in range(1, (layers[-1] if layers else 0) + 1) for kind in "Wb"]
    missing = [k for k in expected if k not in keys]
    if not layers or missing:
        what = "gradients" if prefix else "parameters"
        raise ValueError(
            f"{what}: expected the course's keys {prefix}W1, {prefix}b1, ..., {prefix}WL, {prefix}bL; "
            + (f"missing {missing}" if layers else f"got {sorted(keys)}")
        )
    return expected


def _column(entries: Mapping[str, Any], keys: list[str], what: str) -> A:
    arrays = []
    for key in keys:
        value = np.asarray(entries[key])
        if not np.issubdtype(value.dtype, np.number):
            raise ValueError(f"{what}[{key!r}]: expected a numeric array, got {describe(entries[key])}")
        arrays.append(np.reshape(value, (-1, 1)))
    return np.concatenate(arrays, axis=0)


def dictionary_to_vector(parameters: Params) -> tuple[A, list[str]]:
    """The parameters as one column ``theta`` (n, 1), in the course's order, and the key of every entry.

    Examples
    --------
    >>> theta, keys = dictionary_to_vector({"W1": np.ones((2, 3)), "b1": np.zeros((2, 1))})
    >>> theta.shape, keys[5:7]
    ((8, 1), ['W1', 'b1'])
    """
    order = course_keys(parameters)
    theta = _column(parameters, order, "parameters")
    keys = [key for key in order for _ in range(np.size(parameters[key]))]
    return theta, keys


def gradients_to_vector(gradients: Mapping[str, Any]) -> A:
    """The gradients ``dW1, db1, ...`` as one column (n, 1), in the course's order (``dZ``, ``dA`` left out).

    Examples
    --------
    >>> gradients_to_vector({"dZ1": np.ones(4), "dW1": np.ones((1, 2)), "db1": np.zeros((1, 1))}).ravel().tolist()
    [1.0, 1.0, 0.0]
    """
    return _column(gradients, course_keys(gradients, prefix="d"), "gradients")


def vector_to_dictionary(theta: Any, shapes: Mapping[str, Any] | None = None) -> Params:
    """Cut ``theta`` back into ``{"W1": ..., "b1": ...}``: views of ``theta``, in the course's order.

    Parameters
    ----------
    theta : array of n entries (shape (n, 1) or (n,))
    shapes : dict, optional
        Name -> shape, or a parameter dictionary whose arrays give the shapes; by default the course's exercise,
        :data:`EXERCISE_SHAPES` (what its ``vector_to_dictionary(theta)`` hard-codes).

    Raises
    ------
    ValueError
        ``theta`` does not hold exactly as many entries as the shapes.

    Examples
    --------
    >>> p = vector_to_dictionary(np.arange(47.0).reshape(-1, 1))
    >>> p["b1"].shape, p["b3"].tolist()
    ((5, 1), [[46.0]])
    """
    if shapes is None:
        shapes = EXERCISE_SHAPES
    sizes = {k: tuple(np.shape(v)) if not isinstance(v, tuple) else v for k, v in shapes.items()}
    order = course_keys(sizes)
    column = np.asarray(theta)
    total = sum(int(np.prod(sizes[k])) for k in order)
    if column.size != total or column.ndim > 2 or (column.ndim == 2 and column.shape[1] != 1):
        raise ValueError(
            f"theta: expected a vector of {total} entries ((n, 1) or (n,)) for shapes "
            f"{ {k: sizes[k] for k in order} }, got {describe(theta)}"
        )
    flat = column.reshape(-1)
    out: Params = {}
    start = 0
    for key in order:
        size = int(np.prod(sizes[key]))
        out[key] = flat[start : start + size].reshape(sizes[key])
        start += size
    return out
