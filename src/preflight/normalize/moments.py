"""Exact per-feature mean and variance: float64 shifted sums in cache-sized blocks, merged with Chan's update.

A chunk of rows is summed block by block (``BLOCK_BYTES`` of float64 scratch, so the work stays in cache) after
subtracting a *shift* close to the mean: the statistics seen so far, or the mean of the first block. Summing
``d = x - shift`` and ``d * d`` then loses nothing to cancellation, even for 1e9 + N(0, 1). Chunks are merged with
the pairwise update of Chan, Golub & LeVeque (1979), so any chunking gives the same result to rounding.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BLOCK_BYTES",
    "CONSTANT_ROWS_CAP",
    "Moments",
    "block_rows",
    "chunk_moments",
    "first_block_shift",
    "near_constant",
    "next_shift",
    "nonfinite_columns",
    "parallel_rows",
]

F64 = NDArray[np.float64]
#: Scratch per block: 512 KiB of float64 fits the L2 cache of current x86 and ARM cores.
BLOCK_BYTES = 1 << 19


def block_rows(n_features: int, itemsize: int = 8) -> int:
    """Rows per block so that one block of ``itemsize``-byte values (float64 by default) takes about ``BLOCK_BYTES``.

    Examples
    --------
    >>> block_rows(20), block_rows(20, itemsize=4)
    (3276, 6553)
    """
    return max(64, BLOCK_BYTES // (itemsize * max(n_features, 1)))


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations (M2) per feature, all float64.

    The mean is held as ``shift + offset``, unrounded: ``shift`` is a value near the mean (the mean of the first
    block) and ``offset`` is small. The next chunk is summed about the same ``shift``, so the difference of means in
    Chan's update is a difference of two small offsets, not of two rounded large means (at 1e6 a rounded mean is off
    by 6e-11, which is 1e-10 of a unit standard deviation).
    """

    count: F64
    shift: F64
    offset: F64
    m2: F64

    @classmethod
    def empty(cls, n_features: int) -> Moments:
        """No samples yet."""
        return cls(*(np.zeros(n_features) for _ in range(4)))

    @property
    def mean(self) -> F64:
        """``shift + offset``, rounded once."""
        return self.shift + self.offset

    @property
    def variance(self) -> F64:
        """Population variance (ddof=0); 0 where no sample was seen."""
        with np.errstate(invalid="ignore", divide="ignore"):
            var = self.m2 / self.count
        return np.where(self.count > 0, np.maximum(var, 0.0), 0.0)

    @property
    def finite(self) -> bool:
        """False when a chunk held NaN/inf (or its squares overflowed)."""
        return bool(np.isfinite(self.offset).all() and np.isfinite(self.m2).all())

    def merge(self, other: Moments) -> Moments:
        """Chan, Golub & LeVeque's pairwise update: the moments of both sets of samples together.

        Examples
        --------
        >>> a = chunk_moments(np.array([[1.0], [2.0]])); b = chunk_moments(np.array([[3.0], [4.0]]))
        >>> a.merge(b).mean, a.merge(b).variance
        (array([2.5]), array([1.25]))
        """
        seen = self.count > 0
        shift = np.where(seen, self.shift, other.shift)
        mine = np.where(seen, self.offset, 0.0)
        count = self.count + other.count
        with np.errstate(invalid="ignore", divide="ignore"):
            # (other.shift - shift) is exactly 0 when the chunk was summed about this shift.
            delta = (other.shift - shift) + other.offset - mine
            weight = np.where(count > 0, other.count / count, 0.0)
            offset = mine + delta * weight
            m2 = self.m2 + other.m2 + delta * delta * self.count * weight
        return Moments(count, shift, offset, m2)


def chunk_moments(
    x: NDArray[Any], *, shift: F64 | None = None, skip_nan: bool = False, weights: F64 | None = None
) -> Moments:
    """The moments of the rows of a 2-D chunk about ``shift``, read in cache-sized blocks, float64 accumulation.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Any real dtype (float32 is summed in float64); a memory map is read block by block.
    shift : ndarray of shape (n_features,), optional
        A value near the mean (the statistics seen so far); by default the mean of the first block, or its value
        where a feature is constant over the first block (so a constant feature sums exact zeros: variance 0).
    skip_nan : bool
        Leave NaN out of the counts and sums of their feature (infinities still make the sums non-finite).
    weights : ndarray of shape (n_samples,), optional
        Row weights, finite and >= 0 (:func:`preflight.normalize.weights.check_sample_weight`): the count is their
        sum, each row's values count ``w`` times.

    Returns
    -------
    Moments
        About ``shift``; not ``finite`` where the chunk holds NaN/inf (or squares overflow): the caller checks.

    Examples
    --------
    >>> m = chunk_moments(np.array([[1e9 + 1.0], [1e9 - 1.0]]))
    >>> m.mean - 1e9, m.variance
    (array([0.]), array([1.]))
    >>> chunk_moments(np.array([[1.0], [4.0]]), weights=np.array([2.0, 1.0])).mean
    array([2.])
    """
    n, p = x.shape
    if n == 0:
        return Moments.empty(p)
    if shift is None:
        shift = first_block_shift(x, skip_nan=skip_nan, weights=weights)
    parts: dict[int, tuple[F64, F64, F64]] = {}

    def work(start: int, stop: int) -> None:
        w = None if weights is None else weights[start:stop]
        parts[start] = _shifted_sums(x[start:stop], shift, skip_nan, w)

    parallel_rows(n, p, work)
    # Added in row order, so the result does not depend on which thread finished first.
    count, s1, s2 = (np.sum([parts[k][i] for k in sorted(parts)], axis=0) for i in range(3))
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = np.where(count > 0, s1 / count, 0.0)
        m2 = s2 - s1 * offset
    return Moments(count, shift, offset, np.maximum(m2, 0.0) if np.isfinite(m2).all() else m2)


def first_block_shift(x: NDArray[Any], *, skip_nan: bool, weights: F64 | None = None) -> F64:
    """A value near each feature's mean: the mean of the first block, or its value where the block is constant.

    With weights, only the rows that weigh something count (a row of weight 0 may lie far from the weighted mean,
    and a feature equal on every weighted row must sum exact zeros).

    Examples
    --------
    >>> first_block_shift(np.array([[0.1, 1.0], [0.1, 2.0], [0.1, 6.0]]), skip_nan=False)
    array([0.1, 3. ])
    >>> first_block_shift(np.array([[3.0], [0.0]]), skip_nan=False, weights=np.array([2.0, 0.0]))
    array([3.])
    """
    rows = block_rows(x.shape[1])
    head = np.asarray(x[:rows], dtype=np.float64)
    if weights is not None and (weights[:rows] > 0).any():
        head = head[weights[:rows] > 0]
    with warnings.catch_warnings():  # a column of NaN only has no mean yet: shift 0 below, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        if skip_nan and np.isnan(head).any():
            shift, low, high = np.nanmean(head, axis=0), np.nanmin(head, axis=0), np.nanmax(head, axis=0)
        else:
            shift, low, high = head.mean(axis=0), head.min(axis=0), head.max(axis=0)
    # The mean of equal values can round off their value; the value itself makes every shifted term exactly 0.
    shift = np.where(low == high, low, shift)
    return np.where(np.isfinite(shift), shift, 0.0)


def next_shift(seen: Moments, x: NDArray[Any] | None, weights: F64 | None, *, skip_nan: bool) -> F64 | None:
    """The shift the next chunk is summed about: that of the statistics ``seen`` so far, where a feature has weight.

    A feature that has seen no weight yet (every row so far of weight 0, or NaN) takes the chunk's own
    :func:`first_block_shift`: a zero-weight row may lie far from the mean, and summing about it would cost
    eps x distance^2. Without the chunk's values (``x=None``: a dask array), None lets the chunk choose when no
    feature has seen weight yet.

    Examples
    --------
    >>> seen = chunk_moments(np.array([[1e9, 1.0]]), weights=np.array([0.0]))
    >>> next_shift(seen, np.array([[5.0, 7.0]]), None, skip_nan=False)
    array([5., 7.])
    """
    has = seen.count > 0
    if has.all() or (x is None and has.any()):
        return seen.shift
    if x is None:
        return None
    return np.where(has, seen.shift, first_block_shift(x, skip_nan=skip_nan, weights=weights))


def _shifted_sums(x: NDArray[Any], shift: F64, skip_nan: bool, weights: F64 | None) -> tuple[F64, F64, F64]:
    """Weight sum, weighted sum and sum of squares of ``x - shift`` per column, in cache-sized blocks."""
    n, p = x.shape
    rows = block_rows(p)
    buffer = np.empty((min(rows, n), p))
    ones = np.ones(buffer.shape[0])
    s1, s2 = np.zeros(p), np.zeros(p)
    count = np.full(p, float(n) if weights is None else float(np.sum(weights)))
    for start in range(0, n, rows):
        block = x[start : start + rows]
        d = buffer[: block.shape[0]]
        w = ones[: d.shape[0]] if weights is None else weights[start : start + rows]
        np.subtract(block, shift, out=d)
        if skip_nan:
            missing = np.isnan(d)
            if missing.any():
                count -= w @ missing
                d[missing] = 0.0
        # A matrix-vector product is BLAS's fastest (weighted) column sum; its error is that of float64 summation.
        s1 += w @ d
        np.multiply(d, d, out=d)
        s2 += w @ d
    return count, s1, s2


def nonfinite_columns(x: NDArray[Any], *, skip_nan: bool = False) -> list[int]:
    """Indices of the columns of ``x`` holding NaN or infinity (only infinity with ``skip_nan``), block by block.

    Examples
    --------
    >>> nonfinite_columns(np.array([[1.0, np.nan, np.inf]]))
    [1, 2]
    """
    n, p = x.shape
    bad = np.zeros(p, dtype=bool)
    if not np.issubdtype(x.dtype, np.inexact):
        return []
    test = np.isinf if skip_nan else (lambda b: ~np.isfinite(b))
    for start in range(0, n, block_rows(p)):
        bad |= test(x[start : start + block_rows(p)]).any(axis=0)
    return [int(i) for i in np.flatnonzero(bad)]


#: Rows beyond which the constant-feature bound stops growing (see :func:`near_constant`).
CONSTANT_ROWS_CAP = 1 << 16


def near_constant(moments: Moments) -> NDArray[np.bool_]:
    """Features whose variance is within rounding error of zero: scikit-learn's bound, its row count capped.

    A feature is constant when ``var <= n eps var + (n eps mean)^2`` (scikit-learn's test, from the error bound of
    the two-pass variance; ``n`` is the sum of the weights when weighted), with ``n`` capped at
    ``CONSTANT_ROWS_CAP`` rows. It depends on the feature's statistics and its row count only: never on the number
    of other features, the block height or the chunking. Up to 65,536 rows it is scikit-learn's decision. Beyond,
    scikit-learn's bound keeps growing because its error does; ours does not (each value is summed about a shift
    near the mean, so the mean's magnitude never enters the rounding), so 1e9 + N(0, 1) keeps its scale at any
    row count, where scikit-learn calls it constant from 4.5e6 rows on. A feature with no samples counts as
    constant.

    Examples
    --------
    >>> x = np.array([[0.1, 1.0], [0.1 * 3 / 3, 2.0], [np.nextafter(0.1, 1), 3.0]])
    >>> near_constant(chunk_moments(x))
    array([ True, False])
    """
    eps = np.finfo(np.float64).eps
    n = np.minimum(moments.count, float(CONSTANT_ROWS_CAP))
    var = moments.variance
    bound = n * eps * var + (n * eps * moments.mean) ** 2
    constant: NDArray[np.bool_] = (moments.count == 0) | (var <= bound)
    return constant


#: Below this many elements one thread is faster than starting more.
PARALLEL_ELEMENTS = 1 << 22


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, so ``taskset`` and containers are respected)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def parallel_rows(n_rows: int, n_features: int, work: Callable[[int, int], None]) -> None:
    """Run ``work(start, stop)`` over contiguous row ranges, one per core when the array is large.

    NumPy releases the GIL inside ufuncs, so threads on disjoint row ranges run in parallel; the first exception
    is re-raised.

    Examples
    --------
    >>> seen = []
    >>> parallel_rows(10, 1, lambda a, b: seen.append((a, b)))
    >>> seen
    [(0, 10)]
    """
    threads = min(available_cores(), 8) if n_rows * n_features >= PARALLEL_ELEMENTS else 1
    if threads == 1:
        work(0, n_rows)
        return
    bounds = [n_rows * i // threads for i in range(threads + 1)]
    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(work, bounds[i], bounds[i + 1]) for i in range(threads)]
        for future in futures:
            future.result()
