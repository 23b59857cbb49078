"""The fitted attributes of a Standardizer from its moments, by scikit-learn's conventions for StandardScaler.

``n_samples_seen_`` is a count of rows (int), or with sample weights their sum (float): one number when every
feature saw the same, else one per feature. ``var_`` is None without ``with_std``, ``mean_`` None when neither step
needs it, ``scale_`` None without ``with_std``; a feature that has no values yet (NaN in every row, with
``ignore_nan``) has NaN statistics. The moments themselves are always kept, so ``partial_fit`` and ``save`` never
depend on these choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.normalize import sources as io
from preflight.normalize.moments import Moments, near_constant

__all__ = ["FittedAttributes", "check_features", "fitted_attributes", "scale_of"]

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class FittedAttributes:
    """``n_samples_seen_``, ``mean_``, ``var_`` and ``scale_`` as StandardScaler sets them."""

    n_samples_seen: int | float | NDArray[Any]
    mean: F64 | None
    var: F64 | None
    scale: F64 | None


def scale_of(moments: Moments) -> F64:
    """``sqrt(variance)``, with 1 for constant and near-constant features (and those without values).

    Examples
    --------
    >>> from preflight.normalize.moments import chunk_moments
    >>> scale_of(chunk_moments(np.array([[1.0, 5.0], [3.0, 5.0]])))
    array([1., 1.])
    """
    return np.where(near_constant(moments), 1.0, np.sqrt(moments.variance))


def fitted_attributes(moments: Moments, *, weighted: bool, with_mean: bool, with_std: bool) -> FittedAttributes:
    """The public attributes the moments give, by scikit-learn's conventions.

    Examples
    --------
    >>> from preflight.normalize.moments import chunk_moments
    >>> m = chunk_moments(np.array([[1.0], [3.0]]))
    >>> fitted_attributes(m, weighted=False, with_mean=True, with_std=False)
    FittedAttributes(n_samples_seen=2, mean=array([2.]), var=None, scale=None)
    """
    p = moments.count.shape[0]
    counts = moments.count if weighted else moments.count.astype(np.int64)
    seen: int | float | NDArray[Any] = counts
    if p and (counts == counts[0]).all():
        seen = float(counts[0]) if weighted else int(counts[0])
    empty = moments.count == 0
    return FittedAttributes(
        n_samples_seen=seen,
        mean=np.where(empty, np.nan, moments.mean) if with_mean or with_std else None,
        var=np.where(empty, np.nan, moments.variance) if with_std else None,
        scale=np.where(empty, np.nan, scale_of(moments)) if with_std else None,
    )


def check_features(estimator: Any, n_features: int, names: list[str] | None, *, reset: bool) -> None:
    """``n_features_in_`` and ``feature_names_in_`` set (``reset``, a new fit) or checked against X's, with
    scikit-learn's wording for a different count or different names."""
    if reset:
        estimator.n_features_in_ = n_features
        if names is not None:
            estimator.feature_names_in_ = np.asarray(names, dtype=object)
        return
    io.check_feature_names(getattr(estimator, "feature_names_in_", None), names)
    if n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but Standardizer is expecting {estimator.n_features_in_} features as "
            f"input (it was fitted on {estimator.n_features_in_}; got {n_features})"
        )
