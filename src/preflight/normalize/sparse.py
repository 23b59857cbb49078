"""Sparse input (scipy.sparse matrices and arrays, any format): statistics and scaling that keep it sparse.

Centering would fill every implicit zero, so sparse data is only scaled (``with_mean=False``, as in scikit-learn);
the statistics still count the implicit zeros. scipy is imported by whoever made the matrix, never here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.normalize.moments import Moments

__all__ = ["CENTERING_ERROR", "check_sparse", "is_sparse", "nonfinite_sparse_columns", "scale_sparse", "sparse_moments"]

#: scikit-learn's words (and type: ValueError) for centering sparse data, with what would happen.
CENTERING_ERROR = (
    "Cannot center sparse matrices: pass `with_mean=False` instead (subtracting the mean would turn every implicit "
    "zero into a stored value: a dense matrix)"
)


def is_sparse(X: Any) -> bool:
    """Whether ``X`` is a scipy.sparse matrix or array, without importing scipy.

    Examples
    --------
    >>> is_sparse(np.eye(2))
    False
    """
    return type(X).__module__.startswith("scipy.sparse") and hasattr(X, "tocoo")


def check_sparse(X: Any) -> Any:
    """``X`` if it is a 2-D, non-empty, real sparse matrix or array; a ValueError saying what it is otherwise."""
    if X.ndim != 2:
        raise ValueError(
            f"X: Expected 2D array, got {X.ndim}D sparse array instead (shape {X.shape}); Reshape your data with "
            "X.reshape(1, -1) if it is one sample"
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        what = "0 sample(s)" if X.shape[0] == 0 else "0 feature(s)"
        raise ValueError(f"X: Found array with {what} (shape={X.shape}) while a minimum of 1 is required.")
    if np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError("X: Complex data not supported; expected real numbers")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
        raise ValueError(f"X: expected a numeric sparse matrix, got dtype {X.dtype}")
    return X


def _entries(X: Any) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Rows, columns and float64 values of the stored entries, duplicates summed (the caller's X untouched)."""
    coo = X.tocoo()
    if not coo.has_canonical_format:
        coo = coo.copy()  # COO input comes back as itself: summing its duplicates must not change the caller's
        coo.sum_duplicates()
    return coo.row, coo.col, np.asarray(coo.data, dtype=np.float64)


def sparse_moments(X: Any, *, skip_nan: bool, weights: NDArray[np.float64] | None = None) -> Moments:
    """The moments of a sparse chunk, implicit zeros included: two passes over the stored values.

    The mean comes from the weighted sums of the stored values about a shift; the squared deviations are summed
    about the mean, the implicit zeros adding ``(weight of the zeros) * mean^2`` per column. NaN entries are left
    out of their column's count with ``skip_nan``; otherwise the moments come back not ``finite`` and the caller
    names them.

    Examples
    --------
    >>> import scipy.sparse
    >>> m = sparse_moments(scipy.sparse.csr_array(np.array([[0.0, 2.0], [4.0, 0.0]])), skip_nan=False)
    >>> m.mean, m.variance
    (array([2., 1.]), array([4., 1.]))
    """
    n, p = X.shape
    rows, columns, values = _entries(X)
    row_weights = np.ones(n) if weights is None else weights
    total = float(n) if weights is None else float(np.sum(weights))
    w = row_weights[rows]
    count = np.full(p, total)
    # Columns stored in every row that weighs something have no implicit zeros: their weight is exactly 0, not a
    # difference of two sums.
    weighs = w > 0
    full = np.bincount(columns[weighs], minlength=p) == np.count_nonzero(row_weights)
    if skip_nan:
        missing = np.isnan(values)
        if missing.any():
            count -= np.bincount(columns[missing], weights=w[missing], minlength=p)
            keep = ~missing
            columns, values, w = columns[keep], values[keep], w[keep]
    # About a shift (each column's largest stored value that weighs something): a constant column sums exact zeros,
    # so its variance is 0.
    shift = np.full(p, -np.inf)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/inf: the caller names them
        np.maximum.at(shift, columns[w > 0], values[w > 0])
        shift = np.where(np.isfinite(shift), shift, 0.0)
        d = values - shift[columns]
        zeros = np.where(full, 0.0, count - np.bincount(columns, weights=w, minlength=p))  # implicit zeros' weight
        offset = np.where(count > 0, (np.bincount(columns, weights=w * d, minlength=p) - zeros * shift) / count, 0.0)
        d -= offset[columns]
        m2 = np.bincount(columns, weights=w * d * d, minlength=p) + zeros * (shift + offset) ** 2
    return Moments(count, shift, offset, np.maximum(m2, 0.0) if np.isfinite(m2).all() else m2)


def nonfinite_sparse_columns(X: Any, *, skip_nan: bool) -> list[int]:
    """Columns with a stored NaN or infinity (only infinity with ``skip_nan``).

    Examples
    --------
    >>> import scipy.sparse
    >>> nonfinite_sparse_columns(scipy.sparse.csr_array(np.array([[0.0, np.nan, np.inf]])), skip_nan=True)
    [2]
    """
    _, columns, values = _entries(X)
    bad = np.isinf(values) if skip_nan else ~np.isfinite(values)
    return [int(c) for c in np.unique(columns[bad])]


def scale_sparse(
    X: Any, factor: NDArray[np.float64] | None, *, copy: bool, skip_nan: bool, refuse: Callable[[list[int]], None]
) -> Any:
    """``X`` as CSR (scikit-learn's output format) with column ``j`` multiplied by ``factor[j]``; still sparse.

    The values keep a float dtype of ``X`` (float64 for integers); ``copy=False`` scales a CSR float ``X`` in
    place and returns it. None for ``factor`` only converts (or copies). Columns with a stored NaN (unless
    ``skip_nan``) or infinity go to ``refuse`` before anything changes.

    Examples
    --------
    >>> import scipy.sparse
    >>> x = scipy.sparse.csc_array(np.array([[2.0, 0.0], [0.0, 3.0]]))
    >>> scale_sparse(x, np.array([0.5, 2.0]), copy=True, skip_nan=False, refuse=print).toarray()
    array([[1., 0.],
           [0., 6.]])
    """
    out = X.tocsr()  # CSR input comes back as itself
    bad = np.isinf(out.data) if skip_nan else ~np.isfinite(out.data)
    if bad.any():
        refuse([int(c) for c in np.unique(out.indices[bad])])
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    if out.dtype != dtype:
        out = out.astype(dtype)
    elif copy and out is X:
        out = out.copy()
    if factor is not None:
        out.data *= factor.astype(dtype)[out.indices]
    return out
