"""Data sets: generated (circles, moons), scikit-learn's bundled digits, the course's exact circles, and a
user's CSV or .npy file. Nothing is downloaded. Samples are rows: X has shape (m, n_features).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from preflight._util.aliases import RngLike
from preflight._util.optional import require
from preflight._util.rng import as_generator
from preflight._util.validation import check_in_range, check_positive_int, describe

__all__ = ["Table", "circles", "course_circles", "digits", "load_table", "moons"]


class Table(NamedTuple):
    """A labelled table: features, labels, column names, and the label values in code order."""

    X: NDArray[np.float64]
    y: NDArray[Any]
    feature_names: list[str]
    classes: list[str] | None  # set when string labels were encoded as 0, 1, ...


def _noisy(
    points: NDArray[np.float64], labels: NDArray[np.int64], noise: float, rng: RngLike
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    generator = as_generator(rng, name="seed")
    order = generator.permutation(len(labels))
    points, labels = points[order], labels[order]
    if noise > 0:
        points = points + generator.normal(scale=noise, size=points.shape)
    return points, labels


def circles(
    n_samples: int = 300, *, noise: float = 0.05, factor: float = 0.8, seed: RngLike = 0
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Two concentric circles (label 0 outside, 1 inside, radius ``factor``) with Gaussian noise.

    Examples
    --------
    >>> X, y = circles(10, seed=0)
    >>> X.shape, sorted(set(y.tolist()))
    ((10, 2), [0, 1])
    """
    n = check_positive_int(n_samples, name="n_samples", minimum=2)
    noise = check_in_range(noise, name="noise", low=0.0, high=math.inf, high_open=True)
    factor = check_in_range(factor, name="factor", low=0.0, high=1.0, low_open=True, high_open=True)
    n_out = n // 2
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n - n_out, endpoint=False)
    points = np.concatenate([np.c_[np.cos(t_out), np.sin(t_out)], factor * np.c_[np.cos(t_in), np.sin(t_in)]])
    labels = np.r_[np.zeros(n_out, dtype=np.int64), np.ones(n - n_out, dtype=np.int64)]
    return _noisy(points, labels, noise, seed)


def moons(
    n_samples: int = 300, *, noise: float = 0.1, seed: RngLike = 0
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Two interleaving half circles with Gaussian noise.

    Examples
    --------
    >>> X, y = moons(8, seed=1)
    >>> X.shape, int(y.sum())
    ((8, 2), 4)
    """
    n = check_positive_int(n_samples, name="n_samples", minimum=2)
    noise = check_in_range(noise, name="noise", low=0.0, high=math.inf, high_open=True)
    n_out = n // 2
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n - n_out)
    points = np.concatenate([np.c_[np.cos(t_out), np.sin(t_out)], np.c_[1 - np.cos(t_in), 0.5 - np.sin(t_in)]])
    labels = np.r_[np.zeros(n_out, dtype=np.int64), np.ones(n - n_out, dtype=np.int64)]
    return _noisy(points, labels, noise, seed)


def digits() -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """scikit-learn's bundled 8x8 handwritten digits: X (1797, 64) with pixel values 0..16, y in 0..9.

    The data ship inside scikit-learn (extra ``data``); nothing is downloaded.
    """
    datasets = require("sklearn.datasets", extra="data", purpose="The digits data set")
    bunch = datasets.load_digits()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def course_circles() -> tuple[
    tuple[NDArray[np.float64], NDArray[np.int64]], tuple[NDArray[np.float64], NDArray[np.int64]]
]:
    """The Deep Learning Specialization's initialization data, bit for bit: ``((X_train, y_train), (X_test, y_test))``.

    The course calls ``np.random.seed(1); sklearn.datasets.make_circles(n_samples=300, noise=.05)`` for training
    and seed 2 with 100 samples for test; a RandomState with the same seed gives the same stream.
    """
    datasets = require("sklearn.datasets", extra="data", purpose="The course's circles data")

    def draw(seed: int, n: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        X, y = datasets.make_circles(n_samples=n, noise=0.05, random_state=np.random.RandomState(seed))
        return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)

    return draw(1, 300), draw(2, 100)


def load_table(path: str | Path, *, label: str | int) -> Table:
    """Load a CSV file (header row, comma-separated) or a .npy file, splitting off the label column.

    Parameters
    ----------
    path : str or Path
        ``.csv`` (columns named by its header) or ``.npy`` (a 2-D numeric array, columns named "0", "1", ...;
        or a structured array, columns named by its fields).
    label : str or int
        The label column, by name, or by position (negative counts from the end).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        Unknown file type, missing label column, non-numeric feature values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no such file: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        names, columns = _read_csv(path)
    elif suffix == ".npy":
        names, columns = _read_npy(path)
    else:
        raise ValueError(f"path: expected a .csv or .npy file, got {path.name!r}")
    index = _label_index(label, names)
    y, classes = _encode_labels(columns[index], names[index])
    features = [i for i in range(len(names)) if i != index]
    X = np.empty((len(y), len(features)), dtype=np.float64)
    for j, i in enumerate(features):
        try:
            X[:, j] = np.asarray(columns[i], dtype=np.float64)
        except ValueError:
            raise ValueError(f"path: column {names[i]!r} of {path.name} is not numeric") from None
    return Table(X, y, [names[i] for i in features], classes)


def _read_csv(path: Path) -> tuple[list[str], list[NDArray[Any]]]:
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2:
        raise ValueError(f"path: {path.name} needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    bad = [i + 2 for i, r in enumerate(body) if len(r) != len(header)]
    if bad:
        raise ValueError(f"path: {path.name} line {bad[0]} has a different number of fields than the header")
    table = np.array(body, dtype=str)
    return header, [table[:, i] for i in range(len(header))]


def _read_npy(path: Path) -> tuple[list[str], list[NDArray[Any]]]:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"path: {path.name} is not a readable .npy array ({exc})") from None
    if array.dtype.names:
        return list(array.dtype.names), [array[name] for name in array.dtype.names]
    if array.ndim != 2:
        raise ValueError(f"path: expected a 2-D array in {path.name}, got shape {array.shape}")
    return [str(i) for i in range(array.shape[1])], [array[:, i] for i in range(array.shape[1])]


def _label_index(label: str | int, names: list[str]) -> int:
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if -len(names) <= label < len(names):
            return int(label) % len(names)
    elif isinstance(label, str) and label in names:
        return names.index(label)
    raise ValueError(f"label: expected one of the columns {names} (or a position), got {describe(label)}")


def _encode_labels(column: NDArray[Any], name: str) -> tuple[NDArray[Any], list[str] | None]:
    try:
        values = np.asarray(column, dtype=np.float64)
    except ValueError:
        classes, codes = np.unique(np.asarray(column, dtype=str), return_inverse=True)
        return codes.astype(np.int64), [str(c) for c in classes]
    if not np.all(np.isfinite(values)):
        raise ValueError(f"label: column {name!r} has missing or non-finite values")
    if np.all(values == np.round(values)):
        return values.astype(np.int64), None
    return values, None
