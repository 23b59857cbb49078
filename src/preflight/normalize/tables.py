"""Tables on disk, read and written in chunks: ``.csv`` (a header row, UTF-8) and ``.npy`` (memory-mapped).

What :meth:`preflight.normalize.Standardizer.fit_file` and ``preflight normalize fit|apply`` read and write: the
data never has to fit in memory, a CSV's text columns pass through untouched, and output is written atomically.
"""

from __future__ import annotations

import csv
import importlib.util
import itertools
import operator
import sys
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.files import atomic_open
from preflight._util.optional import require
from preflight._util.validation import check_positive_int, describe
from preflight.normalize.sources import NamedRows

__all__ = ["TableSource", "open_table", "transform_table", "with_progress"]


def _rows(chunk: Any) -> int:
    if isinstance(chunk, NamedRows):
        return int(chunk.values.shape[0])
    return int(chunk.shape[0]) if hasattr(chunk, "shape") else len(chunk)


def paired(chunks: Iterable[Any], weights: Iterable[Any] | None) -> Iterator[tuple[Any, Any]]:
    """``(chunk, its weights)`` for each chunk (weights None when there are none); one weight vector per chunk.

    Examples
    --------
    >>> list(paired([1, 2], [3, 4])), list(paired([1], None))
    ([(1, 3), (2, 4)], [(1, None)])
    """
    if weights is None:
        yield from ((chunk, None) for chunk in chunks)
        return
    missing = object()
    for chunk, chunk_weights in itertools.zip_longest(chunks, weights, fillvalue=missing):
        if chunk is missing or chunk_weights is missing:
            raise ValueError("weights: expected one weight vector per chunk; got a different number of each")
        yield chunk, chunk_weights


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
    which columns are features) and when there is no label. ``weight_column``, the same for a weight column.
    """

    names: list[str] | None
    rows: int | None
    chunks: Iterator[Any]
    label_column: int | None = None
    weight_column: int | None = None


def open_table(
    path: str | Path, *, label: str | int | None = None, weight: str | int | None = None, chunk_rows: int = 65536
) -> TableSource:
    """Read a ``.npy`` file as a memory map, or a ``.csv`` file (header row) lazily, ``chunk_rows`` at a time.

    A CSV file is UTF-8 text (a byte-order mark is allowed) whose column names are unique; blank lines are skipped
    and an empty field is a missing value (NaN). A table without data rows, or without a column besides ``label``,
    is a ValueError naming the file. With ``weight`` (a column of sample weights, finite and >= 0) the chunks are
    :class:`NamedRows` carrying their rows' weights.

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
    weight_at = _label_position(header, weight, name="weight")
    if weight_at is not None and weight_at == at:
        raise ValueError(f"weight: {describe(weight)} is the label column; expected another column")
    keep = [i for i in range(len(header)) if i not in (at, weight_at)]
    if not keep:
        besides = [f"the {role} {header[i]!r}" for role, i in (("label", at), ("weights", weight_at)) if i is not None]
        what = f"no column besides {' and '.join(besides)}" if besides else "no columns"
        raise ValueError(f"path: {path.name} has {what}; expected at least one feature column")
    if array is not None:
        chunks = _npy_chunks(array, keep, chunk_rows, weight_at)
        return TableSource(None, int(array.shape[0]), chunks, at, weight_at)
    return TableSource([header[i] for i in keep], None, _csv_chunks(path, header, keep, chunk_rows, weight_at))


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


def _label_position(names: list[str], label: str | int | None, *, name: str = "label") -> int | None:
    if label is None:
        return None
    if isinstance(label, str) and label not in names and label.lstrip("-").isdigit():
        label = int(label)  # from the command line: a position
    if isinstance(label, str) and label in names:
        return names.index(label)
    if isinstance(label, int) and not isinstance(label, bool) and -len(names) <= label < len(names):
        return label % len(names)
    raise ValueError(f"{name}: expected one of the columns {names} (or a position), got {describe(label)}")


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


def _npy_chunks(array: NDArray[Any], keep: list[int], chunk_rows: int, weight_at: int | None) -> Iterator[Any]:
    whole = len(keep) == array.shape[1]
    for start in range(0, array.shape[0], chunk_rows):
        block = array[start : start + chunk_rows]
        values = block if whole else block[:, keep]
        if weight_at is None:
            yield values
        else:
            lines = range(start, start + block.shape[0])
            yield NamedRows(values, None, _weights(block[:, weight_at], lines, f"column {weight_at}", "row"))


def _weights(values: NDArray[Any], lines: Iterable[int], column: str, unit: str) -> NDArray[np.float64]:
    """A chunk's weights: finite and >= 0, else a ValueError naming the column and the line (or row)."""
    weights = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(weights) | (weights < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"weight: expected finite weights >= 0 in {column}, got {weights[i]} on {unit} {list(lines)[i]}"
        )
    return weights


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


def _csv_chunks(
    path: Path, header: list[str], keep: list[int], chunk_rows: int, weight_at: int | None
) -> Iterator[NamedRows]:
    names = [header[i] for i in keep]
    records = _csv_records(path)
    next(records, None)  # the header
    for block in _csv_blocks(records, chunk_rows, path):
        weights = None
        if weight_at is not None:
            raw = _parse_numbers(block, header, [weight_at], path)[:, 0]
            weights = _weights(raw, (line for line, _ in block), f"column {header[weight_at]!r} of {path.name}", "line")
        yield NamedRows(_parse_numbers(block, header, keep, path), names, weights)


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
    weight_column: int | None = None,
    chunk_rows: int = 65536,
) -> int:
    """Standardize the feature columns of a ``.csv`` or ``.npy`` file into ``target``, chunk by chunk.

    CSV feature columns are found by the names seen in fit; otherwise they are all columns but the label (``label``,
    or ``label_column``, the position recorded with statistics fitted on a table without names: a ``label`` naming
    another column is then a ValueError) and the sample weights (``weight_column``, their recorded position). Only
    feature columns are parsed as numbers: every other field passes through as the text it was (quoted only where
    CSV needs it). Blank lines are skipped, in fit as here, and not
    written. The output goes to a temporary file beside ``target``, renamed over it at the end (atomic). Returns
    the number of rows written.
    """
    source, target = Path(source), Path(target)
    chunk_rows = check_positive_int(chunk_rows, name="chunk_rows")
    header, array = _open(source)
    positions = _apply_columns(standardizer, source, header, array is None, label, label_column, weight_column)
    fitted = getattr(standardizer, "feature_names_in_", None)
    names = [str(n) for n in fitted] if fitted is not None else None
    with atomic_open(target, binary=target.suffix.lower() == ".npy") as handle:
        if array is not None:
            return _transform_npy(standardizer, array, handle, positions, chunk_rows, names)
        return _transform_csv(standardizer, source, handle, header, positions, names, chunk_rows)


def _apply_columns(
    standardizer: Any,
    path: Path,
    header: list[str],
    named: bool,
    label: str | int | None,
    label_column: int | None,
    weight_column: int | None = None,
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
    weight_at = None if named else weight_column  # CSV: a weight column is no fitted feature, so it passes through
    positions = [i for i in range(len(header)) if i not in (at, weight_at)]
    expected = int(standardizer.n_features_in_)
    if len(positions) != expected:
        besides, fix = "", ""
        if at is not None:
            besides = f" besides the label {header[at]!r}" if named else f" besides the label (column {at})"
        if weight_at is not None:
            besides += f" and the sample weights (column {weight_at})"
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
        # np.asarray: a DataFrame where set_output or scikit-learn's global config asks for one; its values are written.
        z = np.asarray(standardizer.transform(_named(_parse_numbers(block, header, positions, source), names)))
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
        block[:, positions] = np.asarray(standardizer.transform(_named(block[:, positions], names)))
        handle.write(block.tobytes())
    return int(array.shape[0])
