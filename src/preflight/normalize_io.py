"""What :class:`preflight.normalize.Standardizer` reads and writes: inputs, files, chunked sources, dask, PyTorch.

Everything optional (pandas, dask, tqdm, torch) is imported on use; the core needs NumPy alone.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import operator
import os
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._io import atomic_write_text
from preflight._moments import Moments, block_rows
from preflight._optional import require
from preflight._validation import check_array, check_positive_int, describe
from preflight._warnings import warn

__all__ = [
    "SCHEMA_VERSION",
    "NamedRows",
    "SavedState",
    "TableSource",
    "as_2d",
    "check_feature_names",
    "dask_sums",
    "is_dask",
    "load_state",
    "nonfinite_error",
    "open_table",
    "save_state",
    "torch_module",
    "transform_table",
    "with_progress",
]

#: Version of the JSON written by ``Standardizer.save``; files of another version are refused, not guessed at.
SCHEMA_VERSION = 1
FORMAT = "preflight.Standardizer"
PARAMS = ("copy", "ignore_nan", "with_mean", "with_std")


@dataclass(frozen=True)
class NamedRows:
    """A block of rows with column names (what a chunked CSV reader yields; a DataFrame without pandas)."""

    values: NDArray[np.float64]
    names: list[str]


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
        if len(X.names) != values.shape[1]:
            raise ValueError(f"X: expected {values.shape[1]} column names, got {len(X.names)}")
        return values, X.names
    if type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            "X: sparse input is not supported by Standardizer (centering would make it dense); "
            "pass a dense array (X.toarray())"
        )
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        columns = list(X.columns)
        names = [str(c) for c in columns] if columns and all(isinstance(c, str) for c in columns) else None
        X = X.to_numpy()
    if isinstance(X, np.ndarray) and X.dtype == object:
        X = X.astype(np.float64)
    x = check_array(X, name="X", finite=False)
    if x.ndim != 2:
        raise ValueError(
            f"X: expected 2 dimensions (rows are samples), got shape {x.shape}; Reshape your data with "
            "X.reshape(-1, 1) if it has one feature or X.reshape(1, -1) if it is one sample"
        )
    if np.iscomplexobj(x):
        raise ValueError("X: Complex data not supported; expected real numbers")
    if x.shape[0] == 0 or x.shape[1] == 0:
        what = "0 sample(s)" if x.shape[0] == 0 else "0 feature(s)"
        raise ValueError(f"X: Found array with {what} (shape={x.shape}) while a minimum of 1 is required.")
    return x, names


def check_feature_names(fitted: NDArray[Any] | None, names: list[str] | None) -> None:
    """scikit-learn's rules (and messages) for column names seen in fit vs now."""
    if fitted is None and names is not None:
        warn("X has feature names, but Standardizer was fitted without feature names")
    elif fitted is not None and names is None:
        warn("X does not have valid feature names, but Standardizer was fitted with feature names")
    elif fitted is not None and names is not None and list(fitted) != names:
        unseen = [n for n in names if n not in set(fitted)]
        missing = [str(n) for n in fitted if n not in set(names)]
        raise ValueError(
            "The feature names should match those that were passed during fit.\n"
            f"Feature names unseen at fit time: {unseen}\nFeature names seen at fit time, yet now missing: {missing}"
            + ("\nFeature names must be in the same order as they were in fit." if not unseen and not missing else "")
        )


def nonfinite_error(features: list[str], *, ignore_nan: bool) -> ValueError:
    """The error for NaN/inf input, naming the features and the fix."""
    if not features:
        return ValueError("X: values too large: their squares overflow float64; rescale the data first")
    what = "infinity" if ignore_nan else "NaN or infinity"
    fix = "" if ignore_nan else " (pass ignore_nan=True to leave NaN out of fit and pass it through transform)"
    return ValueError(f"Input X contains {what} in feature(s) {features}{fix}")


# ---------------------------------------------------------------------- dask
def is_dask(X: Any) -> bool:
    """Whether ``X`` is a dask collection (array or DataFrame), without importing dask."""
    return type(X).__module__.split(".")[0] == "dask"


def dask_sums(X: Any, *, skip_nan: bool, shift: NDArray[np.float64] | None) -> tuple[Moments, list[str] | None]:
    """Shifted sums of a dask array or DataFrame by dask's own reductions (on a cluster when a Client is active).

    The shift (the statistics seen so far, or the mean of the first rows) keeps the float64 sums exact, as in
    :func:`preflight._moments.chunk_moments`; one ``dask.compute`` runs the three reductions together.
    """
    dask = require("dask", extra="dask", purpose="Fitting on a dask collection")
    da = require("dask.array", extra="dask", purpose="Fitting on a dask collection")
    names: list[str] | None = None
    if hasattr(X, "columns"):
        columns = list(X.columns)
        names = [str(c) for c in columns] if columns and all(isinstance(c, str) for c in columns) else None
        arr = X.to_dask_array()
    else:
        arr = X
    if arr.ndim != 2:
        raise ValueError(f"X: expected 2 dimensions, got a dask collection of shape {arr.shape}")
    arr = arr.astype(np.float64)
    if shift is None:
        k = block_rows(arr.shape[1])
        first = np.asarray(
            X.head(k, npartitions=-1).to_numpy() if names is not None or hasattr(X, "columns") else arr[:k].compute(),
            dtype=np.float64,
        )
        if first.shape[0] == 0:
            raise ValueError(f"X: Found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            shift = np.nanmean(first, axis=0) if skip_nan else first.mean(axis=0)
        shift = np.where(np.isfinite(shift), shift, 0.0)
    d = arr - shift
    if skip_nan:
        missing = da.isnan(d)
        count = (~missing).sum(axis=0)
        d = da.where(missing, 0.0, d)
    else:
        count = da.ones_like(d).sum(axis=0)
    s1, s2, n = dask.compute(d.sum(axis=0), (d * d).sum(axis=0), count)
    s1, s2, n = (np.asarray(v, dtype=np.float64) for v in (s1, s2, n))
    if not (np.isfinite(s1).all() and np.isfinite(s2).all()):
        test = da.isinf(arr) if skip_nan else ~da.isfinite(arr)
        bad = np.flatnonzero(np.asarray(test.any(axis=0).compute()))
        labels = [names[i] if names else f"x{i}" for i in bad]
        raise nonfinite_error(labels, ignore_nan=skip_nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = np.where(n > 0, s1 / n, 0.0)
    return Moments(n, shift, offset, np.maximum(s2 - s1 * offset, 0.0)), names


# ---------------------------------------------------------------------- out of core
def _rows(chunk: Any) -> int:
    return int(chunk.values.shape[0]) if isinstance(chunk, NamedRows) else len(chunk)


def with_progress(chunks: Iterable[Any], *, total: int | None, enabled: bool | None) -> Iterator[Any]:
    """Yield ``chunks``, advancing a tqdm bar by their rows (by default when tqdm is there and stderr a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty() and importlib.util.find_spec("tqdm") is not None
    if not enabled:
        yield from chunks
        return
    tqdm = require("tqdm", extra="progress", purpose="The progress bar").tqdm
    with tqdm(total=total, unit=" rows", unit_scale=True, desc="Standardizer.fit", file=sys.stderr) as bar:
        for chunk in chunks:
            yield chunk
            bar.update(_rows(chunk))


@dataclass(frozen=True)
class TableSource:
    """A file read in chunks: its feature names (None for .npy), row count (None when unknown) and chunks.

    ``label_column`` is the position of the label in a table without column names (.npy): ``normalize fit`` records
    it in the statistics file, so that ``apply`` finds the same feature columns. It is None for CSV (the names say
    which columns are features) and when there is no label.
    """

    names: list[str] | None
    rows: int | None
    chunks: Iterator[Any]
    label_column: int | None = None


def open_table(path: str | Path, *, label: str | int | None = None, chunk_rows: int = 65536) -> TableSource:
    """Read a ``.npy`` file as a memory map, or a ``.csv`` file (header row) lazily, ``chunk_rows`` at a time.

    A CSV file is UTF-8 text (a byte-order mark is allowed) whose column names are unique; blank lines are skipped
    and an empty field is a missing value (NaN). A table without data rows, or without a column besides ``label``,
    is a ValueError naming the file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = path.write_text("a,y\\n1,0\\n2,1\\n3,0\\n")
    >>> [c.values.ravel().tolist() for c in open_table(path, label="y", chunk_rows=2).chunks]
    [[1.0, 2.0], [3.0]]
    """
    path = Path(path)
    chunk_rows = check_positive_int(chunk_rows, name="chunk_rows")
    header, array = _open(path)
    at = _label_position(header, label)
    keep = [i for i in range(len(header)) if i != at]
    if not keep:
        what = "no columns" if at is None else f"no column besides the label {header[at]!r}"
        raise ValueError(f"path: {path.name} has {what}; expected at least one feature column")
    if array is not None:
        return TableSource(None, int(array.shape[0]), _npy_chunks(array, keep, chunk_rows), at)
    return TableSource([header[i] for i in keep], None, _csv_chunks(path, header, keep, chunk_rows))


def _open(path: Path) -> tuple[list[str], NDArray[Any] | None]:
    """A table's column names (the positions "0", "1", ... for .npy) and, for .npy, its memory map."""
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = _load_npy(path)
        return [str(i) for i in range(array.shape[1])], array
    if suffix == ".csv":
        return _csv_header(path), None
    raise ValueError(f"path: expected a .csv or .npy file, got {path.name!r}")


def _label_position(names: list[str], label: str | int | None) -> int | None:
    if label is None:
        return None
    if isinstance(label, str) and label not in names and label.lstrip("-").isdigit():
        label = int(label)  # from the command line: a position
    if isinstance(label, str) and label in names:
        return names.index(label)
    if isinstance(label, int) and not isinstance(label, bool) and -len(names) <= label < len(names):
        return label % len(names)
    raise ValueError(f"label: expected one of the columns {names} (or a position), got {describe(label)}")


def _load_npy(path: Path) -> NDArray[Any]:
    try:
        array: NDArray[Any] = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"path: {path.name} is not a readable .npy array ({exc})") from None
    if array.ndim != 2 or array.dtype.names or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"path: expected a 2-D numeric array in {path.name}, got {describe(array)}")
    if array.shape[0] == 0:
        raise ValueError(f"path: {path.name} has no data rows (shape {array.shape})")
    return array


def _npy_chunks(array: NDArray[Any], keep: list[int], chunk_rows: int) -> Iterator[NDArray[Any]]:
    whole = len(keep) == array.shape[1]
    for start in range(0, array.shape[0], chunk_rows):
        block = array[start : start + chunk_rows]
        yield block if whole else block[:, keep]


# A CSV record and the line of the file it starts on (1 for the header when no blank line comes before it).
Record = tuple[int, list[str]]


def _csv_records(path: Path) -> Generator[Record, None, None]:
    """The records of a CSV file that are not blank lines, with the file's own line numbers."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        start = 1
        while True:
            try:
                row = next(reader, None)
            except UnicodeDecodeError:
                raise ValueError(_not_utf8(path)) from None
            except csv.Error as exc:
                raise ValueError(f"path: {path.name} line {start} is not valid CSV ({exc})") from None
            if row is None:
                return
            if row:
                yield start, row
            start = reader.line_num + 1


def _not_utf8(path: Path) -> str:
    """The error for a CSV file that is not UTF-8, with the first bad byte and its line."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                where = f"byte 0x{line[exc.start]:02x} on line {number}"
                return f"path: {path.name} is not UTF-8 text ({where}); save it as UTF-8"
    return f"path: {path.name} is not UTF-8 text; save it as UTF-8"  # pragma: no cover (it changed meanwhile)


def _csv_header(path: Path) -> list[str]:
    records = _csv_records(path)
    try:
        first = next(records, None)
    finally:
        records.close()
    if first is None:
        raise ValueError(f"path: {path.name} is empty; expected a header row")
    header = [name.strip() for name in first[1]]
    repeated = sorted(name for name, count in Counter(header).items() if count > 1)
    if repeated:
        raise ValueError(f"path: {path.name} has duplicate column names {repeated}; give each column its own name")
    return header


def _csv_blocks(records: Iterator[Record], chunk_rows: int, path: Path) -> Iterator[list[Record]]:
    """The data records (after the header) ``chunk_rows`` at a time; a ValueError naming the file if none."""
    empty = True
    while block := list(itertools.islice(records, chunk_rows)):
        empty = False
        yield block
    if empty:
        raise ValueError(f"path: {path.name} has no data rows (only a header)")


def _csv_chunks(path: Path, header: list[str], keep: list[int], chunk_rows: int) -> Iterator[NamedRows]:
    names = [header[i] for i in keep]
    records = _csv_records(path)
    next(records, None)  # the header
    for block in _csv_blocks(records, chunk_rows, path):
        yield NamedRows(_parse_numbers(block, header, keep, path), names)


def _parse_numbers(block: list[Record], header: list[str], columns: list[int], path: Path) -> NDArray[np.float64]:
    """The fields in ``columns`` of each record as float64 (an empty field is NaN); other fields are not read."""
    for line, row in block:
        if len(row) != len(header):
            raise ValueError(f"path: {path.name} line {line} has {len(row)} field(s); the header has {len(header)}")
    pick = operator.itemgetter(*columns)
    text = np.array([pick(row) for _, row in block], dtype=str).reshape(len(block), len(columns))
    blank = np.char.strip(text) == ""
    if blank.any():
        text = np.where(blank, "nan", text)  # np.where widens the dtype: "nan" is not cut to fit a <U1 column
    try:
        return text.astype(np.float64)
    except ValueError:
        for j, column in enumerate(text.T):
            for i, value in enumerate(column):
                try:
                    float(value)
                except ValueError:
                    raise ValueError(
                        f"path: column {header[columns[j]]!r} of {path.name} is not numeric "
                        f"({str(value)!r} on line {block[i][0]})"
                    ) from None
        raise


def transform_table(
    standardizer: Any,
    source: str | Path,
    target: str | Path,
    *,
    label: str | int | None = None,
    label_column: int | None = None,
    chunk_rows: int = 65536,
) -> int:
    """Standardize the feature columns of a ``.csv`` or ``.npy`` file into ``target``, chunk by chunk.

    CSV feature columns are found by the names seen in fit; otherwise they are all columns but the label: ``label``,
    or ``label_column``, the position recorded with statistics fitted on a table without names (a ``label`` naming
    another column is then a ValueError). Only feature columns are parsed as numbers: every other field passes
    through as the text it was (quoted only where CSV needs it). Blank lines are skipped, in fit as here, and not
    written. The output goes to a temporary file beside ``target``, renamed over it at the end (atomic). Returns
    the number of rows written.
    """
    source, target = Path(source), Path(target)
    chunk_rows = check_positive_int(chunk_rows, name="chunk_rows")
    header, array = _open(source)
    positions = _apply_columns(standardizer, source, header, array is None, label, label_column)
    fitted = getattr(standardizer, "feature_names_in_", None)
    names = [str(n) for n in fitted] if fitted is not None else None
    with _AtomicTarget(target) as handle:
        if array is not None:
            return _transform_npy(standardizer, array, handle, positions, chunk_rows, names)
        return _transform_csv(standardizer, source, handle, header, positions, names, chunk_rows)


def _apply_columns(
    standardizer: Any, path: Path, header: list[str], named: bool, label: str | int | None, label_column: int | None
) -> list[int]:
    """Positions of the feature columns in a table to transform, checked against the statistics."""
    at = _label_position(header, label)
    if label_column is not None:
        if label_column >= len(header):
            raise ValueError(
                f"path: {path.name} has {len(header)} columns; the statistics were fitted with the label in "
                f"column {label_column}"
            )
        if at is not None and at != label_column:
            raise ValueError(
                f"label: the statistics were fitted with the label in column {label_column}; got "
                f"{describe(label)} (column {at}); leave label out to use the recorded one"
            )
        at = label_column
    fitted = getattr(standardizer, "feature_names_in_", None)
    if fitted is not None and named:
        missing = [str(n) for n in fitted if n not in header]
        if missing:
            raise ValueError(f"path: {path.name} lacks the fitted feature(s) {missing}; its columns are {header}")
        positions = [header.index(str(n)) for n in fitted]
        if at is not None and at in positions:
            raise ValueError(f"label: {describe(label)} is the fitted feature {header[at]!r}; expected another column")
        return positions
    positions = [i for i in range(len(header)) if i != at]
    expected = int(standardizer.n_features_in_)
    if len(positions) != expected:
        besides, fix = "", ""
        if at is not None:
            besides = f" besides the label {header[at]!r}" if named else f" besides the label (column {at})"
        elif len(positions) == expected + 1:
            fix = " (pass label, --label on the command line, to leave one out)"
        raise ValueError(
            f"path: {path.name} has {len(positions)} column(s){besides}; the statistics are for {expected} "
            f"feature(s){fix}"
        )
    return positions


def _named(values: NDArray[Any], names: list[str] | None) -> Any:
    return values if names is None else NamedRows(values, names)


def _transform_csv(
    standardizer: Any,
    source: Path,
    handle: Any,
    header: list[str],
    positions: list[int],
    names: list[str] | None,
    chunk_rows: int,
) -> int:
    written = 0
    writer, records = csv.writer(handle), _csv_records(source)
    writer.writerow(next(records, (1, header))[1])  # the header as it was written
    for block in _csv_blocks(records, chunk_rows, source):
        z = standardizer.transform(_named(_parse_numbers(block, header, positions, source), names))
        for (_, row), values in zip(block, z.tolist(), strict=True):
            for position, value in zip(positions, values, strict=True):
                row[position] = repr(value)
            writer.writerow(row)
        written += len(block)
    return written


def _transform_npy(
    standardizer: Any,
    array: NDArray[Any],
    handle: Any,
    positions: list[int],
    chunk_rows: int,
    names: list[str] | None,
) -> int:
    dtype = array.dtype if array.dtype.kind == "f" else np.dtype(np.float64)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": array.shape}
    np.lib.format.write_array_header_1_0(handle, header)
    for start in range(0, array.shape[0], chunk_rows):
        block = np.array(array[start : start + chunk_rows], dtype=dtype)
        block[:, positions] = standardizer.transform(_named(block[:, positions], names))
        handle.write(block.tobytes())
    return int(array.shape[0])


class _AtomicTarget:
    """A temporary file beside ``target`` (binary for .npy, text otherwise), renamed over it on success."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __enter__(self) -> Any:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.target.parent, prefix=f".{self.target.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)
        binary = self.target.suffix.lower() == ".npy"
        self.handle = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8")
        return self.handle

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        try:
            if kind is None:
                self.handle.flush()
                os.fsync(self.handle.fileno())
            self.handle.close()
            if kind is None:
                os.replace(self.tmp, self.target)
        finally:
            Path(self.tmp).unlink(missing_ok=True)


# ---------------------------------------------------------------------- persistence
@dataclass(frozen=True)
class SavedState:
    """What a saved file holds: constructor arguments, feature names, the exact moments, the label's position."""

    params: dict[str, bool]
    names: list[str] | None
    moments: Moments
    label_column: int | None = None


def save_state(standardizer: Any, path: str | Path, *, label_column: int | None = None) -> Path:
    """Write a fitted Standardizer as JSON (floats written with repr, so they read back bit for bit).

    ``count``, ``shift``, ``offset`` and ``m2`` are the exact running moments (so ``partial_fit`` can go on after
    ``load``); ``mean``, ``var`` and ``scale`` are there for people and other tools, and ignored on reading.
    ``label_column`` (written only when given) is the label's position in a table without column names
    (:attr:`TableSource.label_column`), for :func:`transform_table`; readers that do not know it ignore it.
    """
    moments: Moments = standardizer._moments
    names = getattr(standardizer, "feature_names_in_", None)
    document = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "params": {k: bool(getattr(standardizer, k)) for k in PARAMS},
        "n_features_in": int(standardizer.n_features_in_),
        "feature_names_in": None if names is None else [str(n) for n in names],
        "count": [int(c) for c in moments.count],
        "shift": moments.shift.tolist(),
        "offset": moments.offset.tolist(),
        "m2": moments.m2.tolist(),
        "mean": standardizer.mean_.tolist(),
        "var": standardizer.var_.tolist(),
        "scale": None if standardizer.scale_ is None else standardizer.scale_.tolist(),
    }
    if label_column is not None:
        document["label_column"] = check_positive_int(label_column, name="label_column", minimum=0)
    return atomic_write_text(path, json.dumps(document, indent=1, allow_nan=False) + "\n")


def load_state(path: str | Path) -> SavedState:
    """Read and validate a file written by :func:`save_state`; anything wrong is a ValueError saying what."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file: {str(path)!r}")
    where = f"path: {path.name}"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where} is not a Standardizer file: malformed or truncated JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{where} is not a Standardizer file (expected a JSON object with format {FORMAT!r})")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
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
    if (count < 0).any() or (m2 < 0).any() or (count != np.round(count)).any():
        raise ValueError(f"{where}: 'count' must be whole numbers >= 0 and 'm2' >= 0")
    label = document.get("label_column")
    if label is not None and (not isinstance(label, int) or isinstance(label, bool) or label < 0):
        raise ValueError(f"{where}: 'label_column' must be null or a column position >= 0, got {describe(label)}")
    return SavedState(dict(params), names, Moments(count, shift, offset, m2), label)


def _vector(document: dict[str, Any], key: str, length: int, where: str) -> NDArray[np.float64]:
    value = document.get(key)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
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
    require("torch", extra="torch", purpose="Standardizer.to_torch")
    from preflight._normalize_torch import Standardize

    center = mean if with_mean else np.zeros_like(mean)
    divide = scale if with_std and scale is not None else np.ones_like(mean)
    return Standardize(center, divide, dtype=dtype)
