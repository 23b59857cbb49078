"""What :class:`preflight.normalize.Standardizer` reads and writes: inputs, files, chunked sources, dask, PyTorch.

Everything optional (pandas, dask, tqdm, torch) is imported on use; the core needs NumPy alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.files import atomic_write_text
from preflight._util.optional import require
from preflight._util.text import NAMES_SHOWN, name_list
from preflight._util.validation import check_array, check_positive_int, describe
from preflight._util.warn import warn
from preflight.normalize.attributes import scale_of
from preflight.normalize.moments import Moments, block_rows, first_block_shift, near_constant

__all__ = [
    "SCHEMA_VERSION",
    "NamedRows",
    "SavedState",
    "as_2d",
    "check_feature_names",
    "dask_sums",
    "is_dask",
    "load_state",
    "nonfinite_error",
    "save_state",
    "torch_module",
]

#: Version of the JSON written by ``Standardizer.save``; files of another version are refused, not guessed at.
SCHEMA_VERSION = 1
FORMAT = "preflight.Standardizer"
PARAMS = ("copy", "ignore_nan", "with_mean", "with_std")


@dataclass(frozen=True)
class NamedRows:
    """A block of rows with column names (what a chunked CSV reader yields; a DataFrame without pandas).

    ``names`` is None for a table without names (.npy); ``weights`` are the rows' sample weights, when the table
    has a weight column.
    """

    values: NDArray[np.float64]
    names: list[str] | None
    weights: NDArray[np.float64] | None = None


# ---------------------------------------------------------------------- in-memory input
def as_2d(X: Any) -> tuple[NDArray[Any], list[str] | None]:
    """``X`` as a 2-D numeric ndarray (not copied when it already is one) and its column names, if any.

    Examples
    --------
    >>> as_2d([[1, 2]])[0].shape, as_2d([[1, 2]])[1]
    ((1, 2), None)
    """
    names: list[str] | None = None
    if isinstance(X, NamedRows):
        values, _ = as_2d(X.values)
        if X.names is not None and len(X.names) != values.shape[1]:
            raise ValueError(f"X: expected {values.shape[1]} column names, got {len(X.names)}")
        return values, X.names
    if type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            "X: sparse input is not supported by Standardizer; pass a dense array (X.toarray()), or scale sparse "
            "data without centering (which would make it dense) with sklearn's StandardScaler(with_mean=False)"
        )
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        columns = list(X.columns)
        names = [str(c) for c in columns] if columns and all(isinstance(c, str) for c in columns) else None
        X = _frame_values(X)
    if isinstance(X, np.ndarray) and X.dtype == object:
        try:
            X = X.astype(np.float64)
        except ValueError:  # text among the values (a TypeError, for other objects, keeps NumPy's own message)
            raise ValueError(f"X: expected numbers, got {_first_text(X, names)}") from None
    x = check_array(X, name="X", finite=False)
    if x.ndim != 2:
        raise ValueError(
            f"X: Expected 2D array, got {x.ndim}D array instead (shape {x.shape}; rows are samples). Reshape your "
            "data with X.reshape(-1, 1) if it has one feature or X.reshape(1, -1) if it is one sample"
        )
    if np.iscomplexobj(x):
        raise ValueError("X: Complex data not supported; expected real numbers")
    if x.shape[0] == 0 or x.shape[1] == 0:
        what = "0 sample(s)" if x.shape[0] == 0 else "0 feature(s)"
        raise ValueError(f"X: Found array with {what} (shape={x.shape}) while a minimum of 1 is required.")
    return x, names


def _frame_values(frame: Any) -> NDArray[Any]:
    """A DataFrame's values; pandas' nullable and pyarrow dtypes as float, their missing values (NA) as NaN.

    float32 when every column is float32 (of any flavour), else float64. Text stays text (object), for the error.
    """
    dtypes = list(getattr(frame, "dtypes", []))
    if all(isinstance(d, np.dtype) and d.kind != "O" for d in dtypes) or not hasattr(frame, "isna"):
        return np.asarray(frame.to_numpy())
    target = np.float32 if all(getattr(d, "numpy_dtype", d) == np.float32 for d in dtypes) else np.float64
    try:
        return np.asarray(frame.to_numpy(dtype=target, na_value=np.nan))
    except (TypeError, ValueError):  # text, or NA in an object column: NA becomes NaN, text stays for the error
        values = np.array(frame.to_numpy(dtype=object), dtype=object)
        values[np.asarray(frame.isna().to_numpy(), dtype=bool)] = np.nan
        return values


def _first_text(X: NDArray[Any], names: list[str] | None) -> str:
    """Where the first value that is not a number sits: "'x' in feature 'b' (row 0)"."""
    for (row, column), value in np.ndenumerate(X.reshape(X.shape[0], -1) if X.ndim else X.reshape(1, 1)):
        try:
            float(value)
        except (TypeError, ValueError):
            feature = names[column] if names is not None else f"x{column}"
            return f"{value!r} in feature {feature!r} (row {row})"
    return "a value that is not a number"


def check_feature_names(fitted: NDArray[Any] | None, names: list[str] | None) -> None:
    """scikit-learn's rules (and messages) for column names seen in fit vs now."""
    if fitted is None and names is not None:
        warn("X has feature names, but Standardizer was fitted without feature names")
    elif fitted is not None and names is None:
        warn("X does not have valid feature names, but Standardizer was fitted with feature names")
    elif fitted is not None and names is not None and list(fitted) != names:
        unseen = sorted(set(names) - {str(n) for n in fitted})
        missing = sorted({str(n) for n in fitted} - set(names))
        message = "The feature names should match those that were passed during fit.\n"
        if unseen:
            message += "Feature names unseen at fit time:\n" + _listed(unseen)
        if missing:
            message += "Feature names seen at fit time, yet now missing:\n" + _listed(missing)
        if not unseen and not missing:
            message += "Feature names must be in the same order as they were in fit.\n"
        raise ValueError(message)


def _listed(names: list[str]) -> str:
    """scikit-learn's list of names in an error: one per line, five at most."""
    return "".join(f"- {name}\n" for name in names[:5]) + ("- ...\n" if len(names) > 5 else "")


def nonfinite_error(features: list[str] | str, *, ignore_nan: bool) -> ValueError:
    """The error for NaN/inf input, naming the features (a list, or one already made by ``name_list``) and the fix."""
    if not features:
        return ValueError("X: values too large: their squares overflow float64; rescale the data first")
    what = "infinity" if ignore_nan else "NaN or infinity"
    fix = "" if ignore_nan else " (pass ignore_nan=True to leave NaN out of fit and pass it through transform)"
    listed = features if isinstance(features, str) else name_list(features)
    return ValueError(f"Input X contains {what} in feature(s) {listed}{fix}")


# ---------------------------------------------------------------------- dask
def is_dask(X: Any) -> bool:
    """Whether ``X`` is a dask collection (array or DataFrame), without importing dask."""
    return type(X).__module__.split(".")[0] == "dask"


def dask_sums(
    X: Any, *, skip_nan: bool, shift: NDArray[np.float64] | None, weights: Any = None
) -> tuple[Moments, list[str] | None]:
    """Shifted sums of a dask array or DataFrame by dask's own reductions (on a cluster when a Client is active).

    The shift (the statistics seen so far, or the mean of the first rows) keeps the float64 sums exact, as in
    :func:`preflight.normalize.moments.chunk_moments`; one ``dask.compute`` runs the reductions together.
    ``weights`` (a dask array or Series, or an in-memory vector, one weight per row) weigh the rows.
    """
    dask = require("dask", extra="dask", purpose="Fitting on a dask collection")
    da = require("dask.array", extra="dask", purpose="Fitting on a dask collection")
    names: list[str] | None = None
    if hasattr(X, "columns"):
        columns = list(X.columns)
        names = [str(c) for c in columns] if columns and all(isinstance(c, str) for c in columns) else None
        # With weights the row chunks must be known, to line the weights up with them.
        arr = X.to_dask_array() if weights is None else X.to_dask_array(lengths=True)
    else:
        arr = X
    if arr.ndim != 2:
        raise ValueError(f"X: expected 2 dimensions, got a dask collection of shape {arr.shape}")
    real = np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.complexfloating)
    if not (real or arr.dtype == np.bool_):
        # astype(float64) would drop an imaginary part silently, as NumPy input is refused
        raise ValueError(f"X: expected real numbers, got a dask collection of dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if shift is None:
        k = block_rows(arr.shape[1])
        first = np.asarray(
            X.head(k, npartitions=-1).to_numpy() if names is not None or hasattr(X, "columns") else arr[:k].compute(),
            dtype=np.float64,
        )
        if first.shape[0] == 0:
            raise ValueError(f"X: Found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required.")
        shift = first_block_shift(first, skip_nan=skip_nan)
    d = arr - shift
    # Row weights as a column (1 without weights), so that each sum below is a weighted sum.
    column = None if weights is None else _dask_weights(weights, arr, da)
    w = 1.0 if column is None else column[:, None]
    if skip_nan:
        missing = da.isnan(d)
        count = (~missing * w).sum(axis=0)
        d = da.where(missing, 0.0, d)
    else:
        count = (da.ones_like(d) * w).sum(axis=0)
    checks = [] if column is None else [da.isfinite(column).all(), column.min(), column.sum()]
    s1, s2, n, *weight_checks = dask.compute((d * w).sum(axis=0), (d * d * w).sum(axis=0), count, *checks)
    if weight_checks and not (weight_checks[0] and weight_checks[1] >= 0 and weight_checks[2] > 0):
        raise ValueError("sample_weight: expected finite weights >= 0, not all zero")
    s1, s2, n = (np.asarray(v, dtype=np.float64) for v in (s1, s2, n))
    if not (np.isfinite(s1).all() and np.isfinite(s2).all()):
        test = da.isinf(arr) if skip_nan else ~da.isfinite(arr)
        bad = np.flatnonzero(np.asarray(test.any(axis=0).compute()))
        labels = [names[i] if names else f"x{i}" for i in bad[:NAMES_SHOWN]]
        raise nonfinite_error(name_list(labels, total=len(bad)), ignore_nan=skip_nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = np.where(n > 0, s1 / n, 0.0)
    return Moments(n, shift, offset, np.maximum(s2 - s1 * offset, 0.0)), names


def _dask_weights(weights: Any, arr: Any, da: Any) -> Any:
    """The weights as a float64 dask vector chunked like the rows of ``arr``."""
    if hasattr(weights, "to_dask_array"):
        weights = weights.to_dask_array(lengths=True)
    w = weights if is_dask(weights) else da.from_array(np.asarray(weights, dtype=np.float64), chunks=-1)
    if w.ndim != 1 or w.shape[0] != arr.shape[0]:
        raise ValueError(f"sample_weight: expected one weight per row of X ({arr.shape[0]}), got shape {w.shape}")
    return w.astype(np.float64).rechunk((arr.chunks[0],))


# ---------------------------------------------------------------------- persistence
@dataclass(frozen=True)
class SavedState:
    """What a saved file holds: constructor arguments, feature names, the exact moments, the label's position.

    ``weighted``: the counts are sums of sample weights; ``weight_column``: the weights' position in the table.
    """

    params: dict[str, bool]
    names: list[str] | None
    moments: Moments
    label_column: int | None = None
    weighted: bool = False
    weight_column: int | None = None


def save_state(
    standardizer: Any, path: str | Path, *, label_column: int | None = None, weight_column: int | None = None
) -> Path:
    """Write a fitted Standardizer as JSON (floats written with repr, so they read back bit for bit).

    ``count``, ``shift``, ``offset`` and ``m2`` are the exact running moments (so ``partial_fit`` can go on after
    ``load``); ``mean``, ``var`` and ``scale`` are there for people and other tools, and ignored on reading.
    ``label_column`` (written only when given) is the label's position in a table without column names
    (:attr:`TableSource.label_column`), for :func:`transform_table`; readers that do not know it ignore it.
    Fitted with sample weights, the counts are sums of weights (any number >= 0) and ``weighted`` is true;
    ``weight_column`` is written like ``label_column``.
    """
    moments: Moments = standardizer._moments
    weighted = bool(getattr(standardizer, "_weighted", False))
    names = getattr(standardizer, "feature_names_in_", None)
    document = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "params": {k: bool(getattr(standardizer, k)) for k in PARAMS},
        "n_features_in": int(standardizer.n_features_in_),
        "feature_names_in": None if names is None else [str(n) for n in names],
        "count": moments.count.tolist() if weighted else [int(c) for c in moments.count],
        "shift": moments.shift.tolist(),
        "offset": moments.offset.tolist(),
        "m2": moments.m2.tolist(),
        "mean": moments.mean.tolist(),
        "var": moments.variance.tolist(),
        # From the moments, as load checks it (a feature without values: scale 1 here, NaN once loaded).
        "scale": None if standardizer.scale_ is None else scale_of(moments).tolist(),
    }
    if label_column is not None:
        document["label_column"] = check_positive_int(label_column, name="label_column", minimum=0)
    if weighted:
        document["weighted"] = True
    if weight_column is not None:
        document["weight_column"] = check_positive_int(weight_column, name="weight_column", minimum=0)
    return atomic_write_text(path, json.dumps(document, indent=1, allow_nan=False) + "\n")


def load_state(path: str | Path) -> SavedState:
    """Read and validate a file written by :func:`save_state`; anything wrong is a ValueError saying what.

    Every field is checked (types, lengths, ranges), and the stored ``mean``, ``var`` and ``scale`` must agree with
    the ones the moments give: a hand-edited or corrupted statistic is refused, not loaded silently.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path: {str(path)!r} is a folder; expected a statistics file written by 'normalize fit'")
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file: {str(path)!r}")
    where = f"path: {path.name}"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: malformed JSON, or a number of thousands of digits; RecursionError: "[[[[..." nested too deep.
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{where} is not a Standardizer file: malformed or truncated JSON ({reason})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{where} is not a Standardizer file (expected a JSON object with format {FORMAT!r})")
    version = document.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:  # not true, not 1.0: the integer the writer wrote
        raise ValueError(
            f"{where} has schema_version {version!r}; this preflight reads version {SCHEMA_VERSION} "
            "(save it again with this version, or upgrade preflight)"
        )
    params = document.get("params")
    if (
        not isinstance(params, dict)
        or sorted(params) != sorted(PARAMS)
        or not all(isinstance(v, bool) for v in params.values())
    ):
        raise ValueError(f"{where}: 'params' must map {list(PARAMS)} to true/false, got {describe(params)}")
    p = document.get("n_features_in")
    if not isinstance(p, int) or isinstance(p, bool) or p < 1:
        raise ValueError(f"{where}: 'n_features_in' must be a positive integer, got {describe(p)}")
    names = document.get("feature_names_in")
    if names is not None and (
        not isinstance(names, list) or len(names) != p or not all(isinstance(n, str) for n in names)
    ):
        raise ValueError(f"{where}: 'feature_names_in' must be null or {p} strings, got {describe(names)}")
    count, shift, offset, m2 = (_vector(document, key, p, where) for key in ("count", "shift", "offset", "m2"))
    weighted = document.get("weighted", False)
    if not isinstance(weighted, bool):
        raise ValueError(f"{where}: 'weighted' must be true or false, got {describe(weighted)}")
    whole = weighted or not (count != np.round(count)).any()
    if (count < 0).any() or (m2 < 0).any() or not whole or (count > MAX_COUNT).any():
        raise ValueError(
            f"{where}: 'count' must be whole numbers from 0 to 2**53 (sums of weights if weighted) and 'm2' >= 0"
        )
    label, weight = (_position(document, key, where) for key in ("label_column", "weight_column"))
    last = p - 1 + (label is not None) + (weight is not None)  # the table's last column: features, label, weights
    for key, position in (("label_column", label), ("weight_column", weight)):
        if position is not None and position > last:
            raise ValueError(f"{where}: {key!r} must be null or a column position from 0 to {last}, got {position}")
    moments = Moments(count, shift, offset, m2)
    _check_derived(document, moments, with_std=params["with_std"], where=where)
    return SavedState(dict(params), names, moments, label, weighted, weight)


def _position(document: dict[str, Any], key: str, where: str) -> int | None:
    value = document.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValueError(f"{where}: {key!r} must be null or a column position >= 0, got {describe(value)}")
    return value


#: The largest sample count a file may hold: float64 counts are exact up to 2**53 (and fit in an int64).
MAX_COUNT = 2.0**53


def _check_derived(document: dict[str, Any], moments: Moments, *, with_std: bool, where: str) -> None:
    """The stored mean, var and scale must be finite and agree with what the moments give.

    save_state writes them from the same float64 moments, so they agree to the last bit; the tolerance, 1e-9 of the
    feature's own magnitude and spread, leaves room for another summation order and still catches any edit that
    would change a standardized value by more than 1e-9 of a standard deviation.
    """
    p = moments.count.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):
        mean, var = moments.mean, moments.variance
    if not (np.isfinite(mean).all() and np.isfinite(var).all()):
        raise ValueError(f"{where}: 'shift' + 'offset' (the mean) or 'm2' / 'count' (the variance) overflow float64")
    std = np.sqrt(var)
    scale = np.where(near_constant(moments), 1.0, std)
    expected: dict[str, tuple[NDArray[np.float64], NDArray[np.float64]]] = {
        "mean": (mean, np.abs(mean) + std),
        "var": (var, var),
    }
    if with_std:
        expected["scale"] = (scale, scale)
    elif document.get("scale") is not None:
        raise ValueError(f"{where}: 'scale' must be null when with_std is false, got {describe(document['scale'])}")
    for key, (value, size) in expected.items():
        stored = _vector(document, key, p, where)
        if key == "scale" and (stored <= 0).any():
            raise ValueError(f"{where}: 'scale' must be positive, got {describe(document[key])}")
        if not (np.abs(stored - value) <= 1e-9 * size).all():
            bad = int(np.flatnonzero(~(np.abs(stored - value) <= 1e-9 * size))[0])
            raise ValueError(
                f"{where}: the stored {key!r} of feature {bad} ({stored[bad]!r}) disagrees with the one the moments "
                f"give ({value[bad]!r}): the file was edited or damaged; fit the statistics again"
            )


def _vector(document: dict[str, Any], key: str, length: int, where: str) -> NDArray[np.float64]:
    value = document.get(key)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        array = np.empty(0)
    if array.shape != (length,) or not np.isfinite(array).all():
        raise ValueError(f"{where}: {key!r} must be a list of {length} finite numbers, got {describe(value)}")
    return array


# ---------------------------------------------------------------------- PyTorch
def torch_module(
    mean: NDArray[np.float64],
    scale: NDArray[np.float64] | None,
    *,
    with_mean: bool,
    with_std: bool,
    dtype: Any = None,
) -> Any:
    """A ``torch.nn.Module`` computing ``(x - mean) / scale``; mean and scale are buffers (in its state_dict)."""
    torch = require("torch", extra="torch", purpose="Standardizer.to_torch")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(
            f"dtype: expected a floating torch dtype such as torch.float32 or torch.float64, got {dtype!r}: "
            "the mean and scale in another dtype would be truncated (an integer mean of -0.6 is 0)"
        )
    from preflight.normalize.torch_layer import Standardize

    center = mean if with_mean else np.zeros_like(mean)
    divide = scale if with_std and scale is not None else np.ones_like(mean)
    return Standardize(center, divide, dtype=dtype)
