"""Sample weights: validated as scikit-learn validates them, then summed in float64 like the data.

A weight ``w`` counts a row ``w`` times: the weighted mean is ``sum(w x) / sum(w)`` and the variance
``sum(w (x - mean)^2) / sum(w)`` (population variance, as unweighted), so integer weights give exactly the
statistics of the data with each row repeated. ``n_samples_seen_`` is then the sum of the weights (a float), as in
scikit-learn. Weights must be finite and non-negative (scikit-learn also takes negative weights; a variance
computed with them can come out negative, so they are refused here).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.validation import describe

__all__ = ["check_sample_weight", "weight_column"]


def check_sample_weight(
    sample_weight: Any, n_samples: int, *, name: str = "sample_weight", allow_all_zero: bool = False
) -> NDArray[np.float64] | None:
    """``sample_weight`` as a float64 vector of length ``n_samples`` (None stays None: every row counts once).

    Parameters
    ----------
    sample_weight : None, a number, or array_like of shape (n_samples,)
        A number weighs every row alike (scikit-learn's convention); a pandas Series or a list is fine.
    n_samples : int
        Rows of ``X``.
    name : str
        The argument's name, for messages.
    allow_all_zero : bool
        A chunk of a larger fit may have weight 0 throughout; a whole fit may not.

    Raises
    ------
    ValueError
        Not 1-D, the wrong length, not numbers, NaN/inf, a negative weight, or (unless ``allow_all_zero``) all
        zero: "Sample weights must contain at least one non-zero number", as scikit-learn says.

    Examples
    --------
    >>> check_sample_weight([1, 2], 2)
    array([1., 2.])
    >>> check_sample_weight(None, 2) is None
    True
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number) and not isinstance(sample_weight, bool):
        weights = np.full(n_samples, sample_weight, dtype=np.float64)
    else:
        if type(sample_weight).__module__.startswith("scipy.sparse"):
            raise ValueError(f"{name}: expected a dense 1-D array, got a sparse {describe(sample_weight)}")
        values = sample_weight.to_numpy() if hasattr(sample_weight, "to_numpy") else sample_weight
        try:
            weights = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected numbers, got {describe(sample_weight)}") from None
        if weights.ndim != 1:
            raise ValueError(
                f"{name}: Sample weights must be 1D array or scalar, got {weights.ndim}D array of shape "
                f"{weights.shape}; expected either a scalar value or a 1D array of length {n_samples}"
            )
        if weights.shape[0] != n_samples:
            raise ValueError(f"{name}.shape == {weights.shape}, expected {(n_samples,)}: one weight per row of X")
    return _check_values(weights, name=name, allow_all_zero=allow_all_zero)


def _check_values(weights: NDArray[np.float64], *, name: str, allow_all_zero: bool) -> NDArray[np.float64]:
    bad = ~np.isfinite(weights)
    if bad.any():
        raise ValueError(f"{name}: expected finite weights, got {weights[bad][0]} at row {int(np.argmax(bad))}")
    negative = weights < 0
    if negative.any():
        raise ValueError(f"{name}: expected weights >= 0, got {weights[negative][0]} at row {int(np.argmax(negative))}")
    if not allow_all_zero and weights.size and not weights.any():
        raise ValueError(f"{name}: Sample weights must contain at least one non-zero number; got all zero")
    return weights


def weight_column(values: NDArray[Any], *, column: str) -> NDArray[np.float64]:
    """The weights read from a table's column (a chunk of a file): finite, >= 0; all zero is fine in one chunk.

    Examples
    --------
    >>> weight_column(np.array([1.0, 0.0]), column="w")
    array([1., 0.])
    """
    return _check_values(np.asarray(values, dtype=np.float64), name=f"weight column {column!r}", allow_all_zero=True)
