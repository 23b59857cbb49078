"""Normalizing inputs: ``x <- (x - mu) / sigma`` with the training set's mean and standard deviation.

:class:`Standardizer` follows scikit-learn's estimator conventions (it works in a Pipeline and passes
``check_estimator``) without depending on scikit-learn: statistics are float64 whatever the input dtype, chunks are
merged exactly (:mod:`preflight._moments`), the output keeps the input dtype, and the work runs in cache-sized
blocks so the extra memory stays small. Files, chunked sources, dask and PyTorch live in
:mod:`preflight.normalize_io`.
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
from preflight.normalize.estimator import EstimatorProtocol
from preflight.normalize.moments import (
    Moments,
    block_rows,
    chunk_moments,
    near_constant,
    nonfinite_columns,
    parallel_rows,
)

__all__ = ["ConstantFeatureWarning", "NotFittedError", "Standardizer"]


class NotFittedError(ValueError, AttributeError):
    """The Standardizer was used before ``fit`` (a ValueError and an AttributeError, as scikit-learn's)."""


class ConstantFeatureWarning(UserWarning):
    """A feature is constant or nearly so: it gets scale 1, so transform only centers it."""


class Standardizer(EstimatorProtocol):
    """Standardize features with the training set's mean and standard deviation: ``z = (x - mean_) / scale_``.

    Parameters
    ----------
    with_mean : bool
        Subtract the mean in ``transform``.
    with_std : bool
        Divide by the standard deviation in ``transform``.
    copy : bool
        False lets ``transform`` and ``inverse_transform`` work in place when the input is a writeable float array.
    ignore_nan : bool
        Leave NaN out of the statistics in ``fit`` and pass them through ``transform``; by default NaN (and always
        infinity) is an error naming the features.

    Attributes
    ----------
    mean_, var_ : ndarray of shape (n_features,), float64
        Mean and population variance of the training samples.
    scale_ : ndarray of shape (n_features,) or None
        ``sqrt(var_)``, with 1 for constant and near-constant features; None when ``with_std=False``.
    n_samples_seen_ : int or ndarray of int
        Samples seen (per feature when NaNs were ignored and the counts differ).
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
    """

    PARAMETERS: ClassVar[dict[str, Any]] = {"with_mean": True, "with_std": True, "copy": True, "ignore_nan": False}
    FITTED_ATTRIBUTE: ClassVar[str] = "mean_"

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
            input_tags=InputTags(allow_nan=bool(self.ignore_nan)),
        )

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None) -> Standardizer:
        """Learn the mean and standard deviation of ``X`` (rows are samples) from scratch.

        ``X`` may be an array, a pandas DataFrame (its column names are kept), a memory-mapped array (read in
        blocks), a dask array or dask DataFrame (reduced by dask, so on a cluster when one is active).

        Raises
        ------
        ValueError
            Non-numeric, empty or non-2-D input; NaN or infinity (named by feature) unless ``ignore_nan``.
        """
        self._reset()
        self._update(X)
        self._require_values()
        self._warn_constant()
        return self

    def partial_fit(self, X: Any, y: Any = None) -> Standardizer:
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
        self._update(X)
        self._warn_constant()
        return self

    def _update(self, X: Any) -> None:
        """``partial_fit`` without the constant-feature warning."""
        self._check_params()
        first = not hasattr(self, "n_features_in_")
        if io.is_dask(X):
            sums, names = io.dask_sums(X, skip_nan=self.ignore_nan, shift=self._shift())
            self._check_features(sums.count.shape[0], names, reset=first)
        else:
            x, names = io.as_2d(X)
            self._check_features(x.shape[1], names, reset=first)
            sums = chunk_moments(x, shift=self._shift(), skip_nan=self.ignore_nan)
            if not sums.finite:
                self._raise_nonfinite(x, nonfinite_columns(x, skip_nan=self.ignore_nan))
        previous = self._moments if hasattr(self, "_moments") else Moments.empty(sums.count.shape[0])
        self._set_statistics(previous.merge(sums))

    def fit_chunks(
        self, chunks: Iterable[Any], *, total_rows: int | None = None, progress: bool | None = None
    ) -> Standardizer:
        """Fit from an iterable of 2-D chunks (arrays or DataFrames) that need not fit in memory together.

        Constant features are looked for once, in the statistics of all chunks (a chunk of equal values in a
        feature that varies is no warning).

        Parameters
        ----------
        chunks : iterable of array_like
            Row blocks with the same columns.
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
        for chunk in tables.with_progress(chunks, total=total_rows, enabled=progress):
            self._update(chunk)
        if not hasattr(self, "mean_"):
            raise ValueError("chunks: expected at least one chunk of rows, got none")
        self._require_values()
        self._warn_constant()
        return self

    def fit_file(
        self, path: str | Path, *, label: str | int | None = None, chunk_rows: int = 65536, progress: bool | None = None
    ) -> Standardizer:
        """Fit from a ``.npy`` file (memory-mapped) or a ``.csv`` file (read in chunks), out of core.

        ``label`` names a column to leave out (by name, or by position); CSV column names become
        ``feature_names_in_``.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "train.csv"
        >>> _ = path.write_text("a,b,y\\n1,10,0\\n3,30,1\\n")
        >>> Standardizer().fit_file(path, label="y").feature_names_in_.tolist()
        ['a', 'b']
        """
        source = tables.open_table(path, label=label, chunk_rows=chunk_rows)
        return self.fit_chunks(source.chunks, total_rows=source.rows, progress=progress)

    # ------------------------------------------------------------------ transforming
    def transform(self, X: Any, copy: bool | None = None) -> NDArray[Any]:
        """``(X - mean_) / scale_`` in the dtype of ``X`` (float64 for integer input).

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ValueError
            A different number of features than in ``fit`` (expected vs got), or NaN/inf (unless ``ignore_nan``,
            which passes NaN through).
        """
        return self._apply(X, copy, inverse=False)

    def inverse_transform(self, X: Any, copy: bool | None = None) -> NDArray[Any]:
        """``X * scale_ + mean_``: back to the original units.

        Examples
        --------
        >>> x = np.array([[1.0, 2.0], [3.0, 8.0]])
        >>> s = Standardizer().fit(x)
        >>> bool(np.allclose(s.inverse_transform(s.transform(x)), x))
        True
        """
        return self._apply(X, copy, inverse=True)

    def fit_transform(self, X: Any, y: Any = None) -> NDArray[Any]:
        """``fit(X).transform(X)``."""
        return self.fit(X, y).transform(X)

    def get_feature_names_out(self, input_features: Any = None) -> NDArray[np.object_]:
        """Output feature names: the input names (``feature_names_in_``, or ``x0, x1, ...``)."""
        self._check_fitted()
        if input_features is None:
            names = getattr(self, "feature_names_in_", [f"x{i}" for i in range(self.n_features_in_)])
            return np.asarray(names, dtype=object)
        names = [str(v) for v in input_features]
        if len(names) != self.n_features_in_:
            raise ValueError(f"input_features: expected {self.n_features_in_} names, got {len(names)}")
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
        return io.torch_module(self.mean_, self.scale_, with_mean=self.with_mean, with_std=self.with_std, dtype=dtype)

    # ------------------------------------------------------------------ internals
    def _reset(self) -> None:
        for name in ("_moments", "mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_", "feature_names_in_"):
            self.__dict__.pop(name, None)

    def _check_params(self) -> None:
        for name in self.PARAMETERS:
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"Standardizer: {name} expected True or False, got {value!r}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "mean_"):
            raise NotFittedError("This Standardizer is not fitted yet: call fit (or partial_fit) before using it")

    def _shift(self) -> NDArray[np.float64] | None:
        return self._moments.shift if hasattr(self, "_moments") else None

    def _check_features(self, n_features: int, names: list[str] | None, *, reset: bool) -> None:
        if reset:
            self.n_features_in_ = n_features
            if names is not None:
                self.feature_names_in_ = np.asarray(names, dtype=object)
            return
        io.check_feature_names(getattr(self, "feature_names_in_", None), names)
        if n_features != self.n_features_in_:
            raise ValueError(
                f"X has {n_features} features, but Standardizer is expecting {self.n_features_in_} features as "
                f"input (it was fitted on {self.n_features_in_}; got {n_features})"
            )

    def _feature_names(self, columns: Sequence[int] | NDArray[np.intp]) -> str:  # the first few, then a count
        names = getattr(self, "feature_names_in_", None)
        shown = [str(names[i]) if names is not None else f"x{i}" for i in columns[:NAMES_SHOWN]]
        return name_list(shown, total=len(columns))

    def _raise_nonfinite(self, x: NDArray[Any], columns: list[int]) -> None:
        raise io.nonfinite_error(self._feature_names(columns) if columns else [], ignore_nan=self.ignore_nan)

    def _set_statistics(self, moments: Moments) -> None:
        self._moments = moments
        p = moments.count.shape[0]
        self.n_features_in_ = p
        self.mean_ = moments.mean.copy()
        self.var_ = moments.variance
        counts = moments.count.astype(np.int64)
        self.n_samples_seen_ = int(counts[0]) if p and (counts == counts[0]).all() else counts
        scale = np.where(near_constant(moments, p), 1.0, np.sqrt(self.var_))
        self.scale_ = scale if self.with_std else None

    def _require_values(self) -> None:
        """After a whole fit: a feature that was NaN in every row (``ignore_nan``) has no statistics to invent."""
        empty = np.flatnonzero(self._moments.count == 0)
        if empty.size:
            raise ValueError(
                f"X: feature(s) {self._feature_names(empty)} have no values: every entry is NaN; drop them before "
                "fitting"
            )

    def _warn_constant(self) -> None:
        # Features without samples yet (NaN so far, partial_fit) are not "constant": fit refuses them instead.
        constant = near_constant(self._moments, self.n_features_in_) & (self._moments.count > 0)
        if constant.any() and self.with_std:
            warn(
                f"Standardizer: feature(s) {self._feature_names(np.flatnonzero(constant))} are constant or their "
                "variance is within rounding error of zero; they get scale 1, so transform only centers them",
                ConstantFeatureWarning,
            )

    def _apply(self, X: Any, copy: bool | None, *, inverse: bool) -> NDArray[Any]:
        self._check_fitted()
        x, names = io.as_2d(X)
        self._check_features(x.shape[1], names, reset=False)
        copy = self.copy if copy is None else copy
        if x.dtype == np.float16:  # float16 arithmetic overflows (60000 - mean: -inf): work in float32, round once
            out = self._apply_array(x.astype(np.float32), False, inverse=inverse).astype(np.float16)
            if copy or not (x.flags.writeable and x.flags.c_contiguous):
                return out
            np.copyto(x, out)
            return x
        return self._apply_array(x, copy, inverse=inverse)

    def _apply_array(self, x: NDArray[Any], copy: bool, *, inverse: bool) -> NDArray[Any]:
        dtype = x.dtype if x.dtype in (np.float16, np.float32, np.float64) else np.dtype(np.float64)
        in_place = not copy and x.dtype == dtype and x.flags.writeable and x.flags.c_contiguous
        out = x if in_place else np.empty(x.shape, dtype=dtype)
        # Statistics in the output dtype: rounding the mean to float32 errs by half an ulp of the mean, no more than
        # the rounding already in float32 data of that magnitude, and keeps the loop in float32 (twice as fast).
        mean = self.mean_.astype(dtype) if self.with_mean else None
        factor = None
        if self.with_std and self.scale_ is not None:
            factor = (self.scale_ if inverse else 1.0 / self.scale_).astype(dtype)
        # NumPy broadcasts a row of statistics over a block one row at a time, so with 20 features its inner loop is
        # 20 elements long and the loop overhead costs more than the copy. The statistics repeated ``reps`` times
        # line up with ``reps`` rows of a C-contiguous block viewed as one long row: inner loops of >= 4096
        # elements (1.5x faster in all, measured at 5e6 x 20).
        p = x.shape[1]
        reps = -(-_LONG_ROW // p)
        rows = max(reps, block_rows(p, dtype.itemsize) // reps * reps)
        long_mean = None if mean is None else np.tile(mean, reps)
        long_factor = None if factor is None else np.tile(factor, reps)

        def affine(target: NDArray[Any]) -> None:
            # ``target`` is C-contiguous (fresh output, or an input that had to be for in-place work), so the reshape
            # is a view and the arithmetic lands in ``target``.
            whole = target.shape[0] // reps * reps
            if whole:
                _affine_in_place(target[:whole].reshape(-1, reps * p), long_mean, long_factor, inverse=inverse)
            if whole < target.shape[0]:
                _affine_in_place(target[whole:], mean, factor, inverse=inverse)

        def check_finite(cached: NDArray[Any], source: NDArray[Any]) -> None:
            # NaN and inf in the source survive the affine map and a sum, so one sum of the cached block finds them.
            # NumPy's own reduction, not BLAS: a BLAS call here starts BLAS threads beside ours (10% slower on 2
            # cores). A non-finite sum only means "look closer" and the source decides: a finite block whose result
            # or sum overflows is no error.
            if not np.isfinite(np.add.reduce(cached.reshape(-1))):
                bad = nonfinite_columns(source, skip_nan=self.ignore_nan)
                if bad:
                    self._raise_nonfinite(source, bad)

        def scan(start: int, stop: int) -> None:
            for first in range(start, stop, rows):
                block = x[first : min(first + rows, stop)]
                check_finite(block, block)

        def work(start: int, stop: int) -> None:
            for first in range(start, stop, rows):
                block, target = x[first : min(first + rows, stop)], out[first : min(first + rows, stop)]
                if not in_place:
                    # A block copy first: memcpy writes whole cache lines without reading them (ERMS), which is
                    # faster than a ufunc writing to fresh memory; the arithmetic then runs in cache.
                    np.copyto(target, block)
                affine(target)
                if not in_place:
                    check_finite(target, block)

        if in_place:
            # The caller's array is only changed once all of it is known to be valid: a bad value in the last
            # block must not leave the first blocks transformed.
            parallel_rows(x.shape[0], x.shape[1], scan)
        parallel_rows(x.shape[0], x.shape[1], work)
        return out


#: Shortest inner loop worth running: below a few thousand elements NumPy's per-loop overhead shows.
_LONG_ROW = 4096


def _affine_in_place(
    out: NDArray[Any], mean: NDArray[Any] | None, factor: NDArray[Any] | None, *, inverse: bool
) -> None:
    """``out = (out - mean) * factor`` or, inverse, ``out = out * factor + mean`` (None: skip that step)."""
    if inverse:
        if factor is not None:
            np.multiply(out, factor, out=out)
        if mean is not None:
            np.add(out, mean, out=out)
        return
    if mean is not None:
        np.subtract(out, mean, out=out)
    if factor is not None:
        np.multiply(out, factor, out=out)
