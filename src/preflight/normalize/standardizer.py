"""Normalizing inputs: ``x <- (x - mu) / sigma`` with the training set's mean and standard deviation.

:class:`Standardizer` follows scikit-learn's estimator conventions (a drop-in for StandardScaler: it passes
scikit-learn's own StandardScaler tests, ``tests/test_sklearn_parity.py``) without depending on scikit-learn:
statistics are float64 whatever the input dtype, chunks are merged exactly (:mod:`preflight.normalize.moments`),
the output keeps the input dtype, and the work runs in cache-sized blocks (:mod:`preflight.normalize.kernel`).
Sample weights (:mod:`~preflight.normalize.weights`), sparse input (:mod:`~preflight.normalize.sparse`), output
containers (:mod:`~preflight.normalize.output`), files, chunked sources and dask (:mod:`~preflight.normalize.sources`,
:mod:`~preflight.normalize.tables`) live beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from preflight._util.text import NAMES_SHOWN, name_list
from preflight._util.warn import warn
from preflight.normalize import sources as io
from preflight.normalize import tables
from preflight.normalize.attributes import check_features, fitted_attributes
from preflight.normalize.callbacks import CallbackSupport, fit_task
from preflight.normalize.errors import ConstantFeatureWarning, NotFittedError, not_fitted
from preflight.normalize.estimator import EstimatorProtocol
from preflight.normalize.kernel import affine_transform
from preflight.normalize.moments import (
    Moments,
    chunk_moments,
    near_constant,
    next_shift,
    nonfinite_columns,
)
from preflight.normalize.output import configured_output, wrap_output
from preflight.normalize.routing import MetadataRequests
from preflight.normalize.sparse import (
    CENTERING_ERROR,
    check_sparse,
    is_sparse,
    nonfinite_sparse_columns,
    scale_sparse,
    sparse_moments,
)
from preflight.normalize.weights import check_sample_weight

__all__ = ["ConstantFeatureWarning", "NotFittedError", "Standardizer"]


class Standardizer(EstimatorProtocol, MetadataRequests, CallbackSupport):
    """Standardize features with the training set's mean and standard deviation: ``z = (x - mean_) / scale_``.

    Parameters
    ----------
    with_mean : bool
        Subtract the mean in ``transform`` (must be False for sparse input: centering would make it dense).
    with_std : bool
        Divide by the standard deviation in ``transform``.
    copy : bool
        False lets ``transform`` and ``inverse_transform`` work in place when the input is a writeable float array
        (or CSR matrix).
    ignore_nan : bool
        Leave NaN (and pandas' ``NA``) out of the statistics in ``fit`` and pass them through ``transform`` (a
        feature NaN in every row gets NaN statistics and a warning, as in StandardScaler); by default NaN (and
        always infinity) is an error naming the features.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,), float64, or None
        Mean of the training samples (weighted, with ``sample_weight``); None when ``with_mean`` and ``with_std``
        are both False (scikit-learn's convention: the statistics are still kept for ``partial_fit`` and ``save``).
    var_ : ndarray of shape (n_features,), float64, or None
        Population variance of the training samples; None when ``with_std=False``.
    scale_ : ndarray of shape (n_features,) or None
        ``sqrt(var_)``, with 1 for constant and near-constant features; None when ``with_std=False``.
    n_samples_seen_ : int, float or ndarray
        Samples seen (per feature when NaNs were ignored and the counts differ); with ``sample_weight``, the sum of
        the weights (a float), as in scikit-learn.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names, when fitted on a DataFrame with string column names.

    Examples
    --------
    >>> s = Standardizer().fit(np.array([[1.0, 10.0], [3.0, 30.0]], dtype=np.float32))
    >>> s.mean_, s.scale_
    (array([ 2., 20.]), array([ 1., 10.]))
    >>> s.transform(np.array([[3.0, 10.0]], dtype=np.float32))
    array([[ 1., -1.]], dtype=float32)
    >>> Standardizer().fit([[1.0], [4.0]], sample_weight=[2, 1]).mean_
    array([2.])
    """

    PARAMETERS: ClassVar[dict[str, Any]] = {"with_mean": True, "with_std": True, "copy": True, "ignore_nan": False}
    FITTED_ATTRIBUTE: ClassVar[str] = "mean_"
    feature_names_in_: NDArray[np.object_]  # set by fit when X has column names (normalize/attributes.py)

    def __init__(self, *, with_mean: bool = True, with_std: bool = True, copy: bool = True, ignore_nan: bool = False):
        self.with_mean = with_mean
        self.with_std = with_std
        self.copy = copy
        self.ignore_nan = ignore_nan

    def __sklearn_tags__(self) -> Any:
        """Tags for scikit-learn (only scikit-learn calls this, so it may import it)."""
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]),
            input_tags=InputTags(allow_nan=bool(self.ignore_nan), sparse=not self.with_mean),
        )

    def _repr_html_(self) -> str:  # the notebook view: parameters, fitted statistics (normalize/display.py)
        from preflight.normalize.display import standardizer_html

        return standardizer_html(self)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> Standardizer:
        """Learn the mean and standard deviation of ``X`` (rows are samples) from scratch.

        ``X`` may be an array, a pandas DataFrame (its column names are kept; nullable and pyarrow dtypes, ``NA``
        as NaN), a scipy.sparse matrix or array (with ``with_mean=False``), a memory-mapped array (read in blocks),
        or a dask array or DataFrame (reduced by dask, so on a cluster when one is active).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : ignored
        sample_weight : array_like of shape (n_samples,) or a number, optional
            Row weights, finite and >= 0, not all zero (a dask array or Series for dask ``X``): a row of weight
            ``w`` counts as ``w`` rows.

        Raises
        ------
        ValueError
            Non-numeric, empty or non-2-D input; NaN or infinity (named by feature) unless ``ignore_nan``; sparse
            input with ``with_mean=True``; bad weights.
        """
        with fit_task(self, X, y, sample_weight):
            self._reset()
            self._update(X, sample_weight)
            self._require_values()
            self._warn_constant()
        return self

    def partial_fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> Standardizer:
        """Update the statistics with the rows of ``X``; any chunking gives the statistics of ``fit`` on all rows.

        Each call checks the statistics so far and warns (:class:`ConstantFeatureWarning`) about features that are
        constant up to now, so a caller feeding chunks by hand may be warned about an early chunk that later ones
        prove wrong; :meth:`fit_chunks` and :meth:`fit_file` check once, on the final statistics.

        Examples
        --------
        >>> x = np.arange(12.0).reshape(6, 2)
        >>> s = Standardizer().partial_fit(x[:1]).partial_fit(x[1:])
        >>> bool(np.allclose(s.var_, Standardizer().fit(x).var_, rtol=1e-12))
        True
        """
        with fit_task(self, X, y, sample_weight):
            self._update(X, sample_weight)
            self._warn_constant()
        return self

    def _update(self, X: Any, sample_weight: Any, *, chunk: bool = False) -> None:
        """``partial_fit`` without the constant-feature warning (a chunk of a larger fit may weigh 0 throughout)."""
        self._check_params()
        first = not hasattr(self, "n_features_in_")
        if isinstance(X, io.NamedRows) and X.weights is not None:
            X, sample_weight = io.NamedRows(X.values, X.names), X.weights
        if io.is_dask(X):
            sums, names = io.dask_sums(X, skip_nan=self.ignore_nan, shift=self._shift(), weights=sample_weight)
            self._check_features(sums.count.shape[0], names, reset=first)
        elif is_sparse(X):
            x = self._sparse(X)
            weights = check_sample_weight(sample_weight, x.shape[0], allow_all_zero=chunk)
            self._check_features(x.shape[1], None, reset=first)
            sums = sparse_moments(x, skip_nan=self.ignore_nan, weights=weights)
            if not sums.finite:
                self._raise_nonfinite(nonfinite_sparse_columns(x, skip_nan=self.ignore_nan))
        else:
            x, names = io.as_2d(X)
            weights = check_sample_weight(sample_weight, x.shape[0], allow_all_zero=chunk)
            self._check_features(x.shape[1], names, reset=first)
            sums = chunk_moments(x, shift=self._shift(x, weights), skip_nan=self.ignore_nan, weights=weights)
            if not sums.finite:
                self._raise_nonfinite(nonfinite_columns(x, skip_nan=self.ignore_nan))
        self._weighted = getattr(self, "_weighted", False) or sample_weight is not None
        previous = self._moments if hasattr(self, "_moments") else Moments.empty(sums.count.shape[0])
        self._set_statistics(previous.merge(sums))

    def fit_chunks(
        self,
        chunks: Iterable[Any],
        *,
        weights: Iterable[Any] | None = None,
        total_rows: int | None = None,
        progress: bool | None = None,
    ) -> Standardizer:
        """Fit from an iterable of 2-D chunks (arrays, DataFrames, sparse) that need not fit in memory together.

        Constant features are looked for once, in the statistics of all chunks (a chunk of equal values in a
        feature that varies is no warning).

        Parameters
        ----------
        chunks : iterable of array_like
            Row blocks with the same columns.
        weights : iterable of array_like, optional
            One weight vector per chunk (a chunk may weigh 0 throughout; all of them may not).
        total_rows : int, optional
            For the progress bar.
        progress : bool, optional
            Show a progress bar (tqdm, the ``progress`` extra); by default when tqdm is installed and stderr is a
            terminal.

        Examples
        --------
        >>> x = np.arange(20.0).reshape(10, 2)
        >>> Standardizer().fit_chunks(x[i : i + 3] for i in range(0, 10, 3)).mean_
        array([ 9., 10.])
        """
        self._reset()
        pairs = tables.paired(tables.with_progress(chunks, total=total_rows, enabled=progress), weights)
        for chunk, chunk_weights in pairs:
            self._update(chunk, chunk_weights, chunk=True)
        if not hasattr(self, "mean_"):
            raise ValueError("chunks: expected at least one chunk of rows, got none")
        self._require_values()
        self._warn_constant()
        return self

    def fit_file(
        self,
        path: str | Path,
        *,
        label: str | int | None = None,
        weight: str | int | None = None,
        chunk_rows: int = 65536,
        progress: bool | None = None,
    ) -> Standardizer:
        """Fit from a ``.npy`` file (memory-mapped) or a ``.csv`` file (read in chunks), out of core.

        ``label`` names a column to leave out and ``weight`` a column of sample weights (each by name, or by
        position); CSV column names become ``feature_names_in_``.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "train.csv"
        >>> _ = path.write_text("a,b,w,y\\n1,10,3,0\\n5,30,1,1\\n")
        >>> s = Standardizer().fit_file(path, label="y", weight="w")
        >>> s.feature_names_in_.tolist(), s.mean_, s.n_samples_seen_
        (['a', 'b'], array([ 2., 15.]), 4.0)
        """
        source = tables.open_table(path, label=label, weight=weight, chunk_rows=chunk_rows)
        return self.fit_chunks(source.chunks, total_rows=source.rows, progress=progress)

    # ------------------------------------------------------------------ transforming
    def transform(self, X: Any, copy: bool | None = None) -> Any:
        """``(X - mean_) / scale_`` in the dtype of ``X`` (float64 for integer input).

        Sparse ``X`` (with ``with_mean=False``) comes back sparse (CSR); a DataFrame when ``set_output`` (or
        scikit-learn's global ``transform_output``) asks for one.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ValueError
            A different number of features than in ``fit`` (expected vs got), or NaN/inf (unless ``ignore_nan``,
            which passes NaN through).
        """
        out, output = self._apply(X, copy, inverse=False), configured_output(self)
        return out if output == "default" else wrap_output(out, X, self.get_feature_names_out(), output)

    def inverse_transform(self, X: Any, copy: bool | None = None) -> Any:
        """``X * scale_ + mean_``: back to the original units (an ndarray, or CSR for sparse ``X``).

        Examples
        --------
        >>> x = np.array([[1.0, 2.0], [3.0, 8.0]])
        >>> s = Standardizer().fit(x)
        >>> bool(np.allclose(s.inverse_transform(s.transform(x)), x))
        True
        """
        return self._apply(X, copy, inverse=True)

    def fit_transform(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """``fit(X, y, sample_weight).transform(X)``."""
        return self.fit(X, y, sample_weight=sample_weight).transform(X)

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.object_]:
        """Output feature names: the input names (``feature_names_in_``, or ``x0, x1, ...``)."""
        self._check_fitted()
        if input_features is None:
            names = getattr(self, "feature_names_in_", [f"x{i}" for i in range(self.n_features_in_)])
            return np.asarray(names, dtype=object)
        names = [str(v) for v in input_features]
        if len(names) != self.n_features_in_:
            raise ValueError(
                f"input_features should have length equal to number of features ({self.n_features_in_}), "
                f"got {len(names)}"
            )
        if hasattr(self, "feature_names_in_") and names != list(self.feature_names_in_):
            raise ValueError("input_features is not equal to feature_names_in_")
        return np.asarray(names, dtype=object)

    # ------------------------------------------------------------------ persistence and interop
    def save(self, path: str | Path) -> Path:
        """Write the fitted statistics as JSON (with a schema version), atomically.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> s = Standardizer().fit(np.array([[1.0], [3.0]]))
        >>> path = s.save(pathlib.Path(tempfile.mkdtemp()) / "stats.json")
        >>> Standardizer.load(path).mean_
        array([2.])
        """
        self._check_fitted()
        return io.save_state(self, path)

    @classmethod
    def load(cls, path: str | Path) -> Standardizer:
        """Read a file written by :meth:`save`; a malformed, truncated or wrong-version file is a ValueError.

        Constant features were reported when the statistics were fitted; loading them (for every ``apply``) does
        not warn again.
        """
        state = io.load_state(path)
        standardizer = cls(**state.params)
        if state.names is not None:
            standardizer.feature_names_in_ = np.asarray(state.names, dtype=object)
        standardizer._weighted = state.weighted
        standardizer._set_statistics(state.moments)
        return standardizer

    def to_torch(self, dtype: Any = None) -> Any:
        """A ``torch.nn.Module`` applying this transform, with the statistics as buffers (saved in state_dict).

        Parameters
        ----------
        dtype : torch.dtype, optional
            Of the buffers; torch's default dtype (float32) when omitted.
        """
        self._check_fitted()
        return io.torch_module(
            self._moments.mean, self.scale_, with_mean=self.with_mean, with_std=self.with_std, dtype=dtype
        )

    # ------------------------------------------------------------------ internals
    def _reset(self) -> None:
        for name in ("_moments", "_weighted", "mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_"):
            self.__dict__.pop(name, None)
        self.__dict__.pop("feature_names_in_", None)

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise not_fitted(
                f"This {type(self).__name__} instance is not fitted yet: call fit (or partial_fit) before using it"
            )

    def _sparse(self, X: Any, *, inverse: bool = False) -> Any:
        if self.with_mean:
            raise ValueError(CENTERING_ERROR.replace("center", "uncenter") if inverse else CENTERING_ERROR)
        return check_sparse(X)

    def _shift(self, x: NDArray[Any] | None = None, weights: Any = None) -> NDArray[np.float64] | None:
        return next_shift(self._moments, x, weights, skip_nan=self.ignore_nan) if hasattr(self, "_moments") else None

    def _check_features(self, n_features: int, names: list[str] | None, *, reset: bool) -> None:
        check_features(self, n_features, names, reset=reset)

    def _feature_names(self, columns: Sequence[int] | NDArray[np.intp]) -> str:  # the first few, then a count
        names = getattr(self, "feature_names_in_", None)
        shown = [str(names[i]) if names is not None else f"x{i}" for i in columns[:NAMES_SHOWN]]
        return name_list(shown, total=len(columns))

    def _raise_nonfinite(self, columns: list[int]) -> None:
        raise io.nonfinite_error(self._feature_names(columns), ignore_nan=self.ignore_nan)

    def _set_statistics(self, moments: Moments) -> None:
        self._moments = moments
        self.n_features_in_ = moments.count.shape[0]
        fitted = fitted_attributes(moments, weighted=self._weighted, with_mean=self.with_mean, with_std=self.with_std)
        self.n_samples_seen_ = fitted.n_samples_seen
        self.mean_, self.var_, self.scale_ = fitted.mean, fitted.var, fitted.scale

    def _require_values(self) -> None:
        """After a whole fit: a feature without values (all NaN, or weight 0) has no statistics to invent.

        With ``ignore_nan`` it gets NaN statistics (so ``transform`` gives NaN in it), as in StandardScaler, and a
        warning naming it; otherwise (only weights of 0 can empty a feature then) it is an error.
        """
        empty = np.flatnonzero(self._moments.count == 0)
        if not empty.size:
            return
        why = f"feature(s) {self._feature_names(empty)} have no values: every entry is NaN" + (
            " or has weight 0" if self._weighted else ""
        )
        if not self.ignore_nan or (self._weighted and empty.size == self.n_features_in_):
            raise ValueError(f"X: {why}; drop them before fitting")
        warn(f"Standardizer: {why}; their mean_, var_ and scale_ are NaN and transform gives NaN in them")

    def _warn_constant(self) -> None:
        # Features without samples yet (NaN so far) are not "constant": they have NaN statistics instead.
        constant = near_constant(self._moments) & (self._moments.count > 0)
        if constant.any() and self.with_std:
            warn(
                f"Standardizer: feature(s) {self._feature_names(np.flatnonzero(constant))} are constant or their "
                "variance is within rounding error of zero; they get scale 1, so transform only centers them",
                ConstantFeatureWarning,
            )

    def _apply(self, X: Any, copy: bool | None, *, inverse: bool) -> Any:
        self._check_fitted()
        copy = self.copy if copy is None else copy
        factor = None
        if self.with_std and self.scale_ is not None:
            factor = self.scale_ if inverse else 1.0 / self.scale_
        if is_sparse(X):
            x = self._sparse(X, inverse=inverse)
            self._check_features(x.shape[1], None, reset=False)
            return scale_sparse(x, factor, copy=copy, skip_nan=self.ignore_nan, refuse=self._raise_nonfinite)
        x, names = io.as_2d(X)
        self._check_features(x.shape[1], names, reset=False)

        def refuse(block: NDArray[Any]) -> None:
            bad = nonfinite_columns(block, skip_nan=self.ignore_nan)
            if bad:
                self._raise_nonfinite(bad)

        mean = self.mean_ if self.with_mean else None
        if x.dtype == np.float16:  # float16 arithmetic overflows (60000 - mean: -inf): work in float32, round once
            out = affine_transform(x.astype(np.float32), mean, factor, copy=False, inverse=inverse, on_nonfinite=refuse)
            if copy or not (x.flags.writeable and x.flags.c_contiguous):
                return out.astype(np.float16)
            np.copyto(x, out.astype(np.float16))
            return x
        return affine_transform(x, mean, factor, copy=copy, inverse=inverse, on_nonfinite=refuse)
