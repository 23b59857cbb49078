"""Samples as rows or as columns: the reference network's two layouts, converted at its boundary.

``"rows"`` (the default, as ``torch.nn.Linear``): ``X`` of shape (m, n_x), ``b{l}`` of shape (n_l,), pre-activations
(m, n_l), labels (m,) or (m, k), dropout masks (m, n_l).

``"columns"`` (the course's): ``X`` of shape (n_x, m), ``b{l}`` of shape (n_l, 1), pre-activations (n_l, m), labels
(m,), (1, m) or (k, m), dropout masks (n_l, m); the gradients come back as ``dW{l}``, ``db{l}`` do in the course's
code, shaped like the parameters.

Weights ``W{l}`` are (n_l, n_{l-1}) in both. The network always computes in rows: in columns its inputs come in as
transposed views and its results go out transposed, and a bias of shape (n, 1) is read through a view of shape (n,),
so the arithmetic is the same in both layouts.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from preflight._util.aliases import Params
from preflight._util.validation import describe

__all__ = [
    "LAYOUTS",
    "Layout",
    "bias_shape",
    "keep_mask",
    "labels_in_rows",
    "params_in_layout",
    "params_in_rows",
    "samples_in_layout",
]

A = NDArray[Any]
Layout = Literal["rows", "columns"]
#: The layouts a :class:`preflight.nn.Network` accepts.
LAYOUTS: tuple[Layout, ...] = ("rows", "columns")


def bias_shape(n: int, layout: Layout) -> tuple[int, ...]:
    """Shape of a bias of ``n`` units: (n,) in rows, (n, 1) in columns.

    Examples
    --------
    >>> bias_shape(5, "rows"), bias_shape(5, "columns")
    ((5,), (5, 1))
    """
    return (n, 1) if layout == "columns" else (n,)


def params_in_rows(params: Params, layout: Layout) -> Params:
    """The parameters as the network computes with them: biases (n, 1) read as (n,) views (no copy when contiguous).

    Examples
    --------
    >>> p = {"W1": np.ones((2, 3)), "b1": np.zeros((2, 1))}
    >>> rows = params_in_rows(p, "columns"); rows["b1"].shape, np.shares_memory(rows["b1"], p["b1"])
    ((2,), True)
    """
    if layout == "rows":
        return params
    return {name: value.reshape(-1) if name[0] == "b" else value for name, value in params.items()}


def params_in_layout(params: Params, layout: Layout) -> Params:
    """Parameters or gradients computed in rows, shaped for ``layout`` (biases as (n, 1) views in columns)."""
    if layout == "rows":
        return params
    return {name: value.reshape(-1, 1) if name[0] == "b" else value for name, value in params.items()}


def samples_in_layout(array: A, layout: Layout) -> A:
    """A per-sample array computed in rows, (m, n), shaped for ``layout``: its transpose (n, m) in columns (a view).

    The same function takes a columns array back to rows: the transpose is its own inverse.
    """
    return array.T if layout == "columns" and array.ndim == 2 else array


def labels_in_rows(y: Any, m: int, layout: Layout) -> Any:
    """Labels as the rows layout reads them: in columns, (k, m) or (1, m) become (m, k) or (m, 1); (m,) stays.

    Raises
    ------
    ValueError
        In columns, labels whose last axis does not have one entry per sample (per column of ``X``).

    Examples
    --------
    >>> labels_in_rows(np.array([[1, 1, 0]]), 3, "columns").shape
    (3, 1)
    """
    if layout == "rows":
        return y
    array = np.asarray(y)
    if array.ndim not in (1, 2) or array.shape[-1] != m:
        raise ValueError(
            f"y: expected {m} labels, one per column of X (layout='columns'): shape ({m},), (1, {m}) or (k, {m}); "
            f"got {describe(y)}"
        )
    return array.T if array.ndim == 2 else array


def keep_mask(mask: Any, layer: int) -> NDArray[np.bool_]:
    """A dropout keep-mask as booleans: True/False, or exactly 1/0 (a 0.5 is no mask value, not a "keep").

    Examples
    --------
    >>> keep_mask([[1, 0]], 0)
    array([[ True, False]])
    """
    values = np.asarray(mask)
    if values.dtype == np.bool_:
        return values
    fix = "draw masks with net.dropout_masks(rng, m) (the 1 / keep_prob scaling is applied for you)"
    if not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"masks[{layer}]: expected a boolean keep-mask, got dtype {values.dtype}; {fix}")
    odd = values[~np.isin(values, (0, 1))]
    if odd.size:
        raise ValueError(
            f"masks[{layer}]: expected a boolean keep-mask (True/False, or 1/0), got the value "
            f"{odd.reshape(-1)[0].item()!r}; {fix}"
        )
    return values.astype(bool)
