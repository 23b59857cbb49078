"""The dense transform kernel: ``(x - mean) * factor`` (or back) in cache-sized blocks, in the input's float dtype.

What :meth:`preflight.normalize.Standardizer.transform` and ``inverse_transform`` run on an ndarray once it is
validated. Each block is copied into a preallocated output (memcpy writes whole cache lines without reading
them) and transformed there while it is in cache; one NumPy sum per block is the NaN/inf test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.normalize.moments import block_rows, parallel_rows

__all__ = ["affine_transform", "output_dtype"]

#: Shortest inner loop worth running: below a few thousand elements NumPy's per-loop overhead shows.
_LONG_ROW = 4096


def output_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype ``transform`` returns for input of ``dtype``: the same float dtype, float64 for anything else.

    Examples
    --------
    >>> output_dtype(np.dtype(np.float32)), output_dtype(np.dtype(np.int64))
    (dtype('float32'), dtype('float64'))
    """
    return dtype if dtype in (np.float16, np.float32, np.float64) else np.dtype(np.float64)


def affine_transform(
    x: NDArray[Any],
    mean: NDArray[np.float64] | None,
    factor: NDArray[np.float64] | None,
    *,
    copy: bool,
    inverse: bool,
    on_nonfinite: Callable[[NDArray[Any]], None],
) -> NDArray[Any]:
    """``(x - mean) * factor``, or ``x * factor + mean`` when ``inverse`` (None: skip that step).

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        Validated 2-D numeric input.
    mean, factor : ndarray of shape (n_features,) or None
        float64 statistics; rounded to the output dtype once.
    copy : bool
        False works in place when ``x`` is a writeable, C-contiguous array of the output dtype; all of ``x`` is
        checked before any of it changes.
    inverse : bool
        Undo the transform.
    on_nonfinite : callable
        Called with a block of ``x`` whose result is not finite; it raises if the block holds values it refuses
        (a finite block whose result or sum overflows is no error, so it may also return).

    Examples
    --------
    >>> affine_transform(np.array([[1.0, 4.0]]), np.array([1.0, 2.0]), np.array([1.0, 0.5]), copy=True,
    ...                  inverse=False, on_nonfinite=print)
    array([[0., 1.]])
    """
    dtype = output_dtype(x.dtype)
    in_place = not copy and x.dtype == dtype and x.flags.writeable and x.flags.c_contiguous
    out = x if in_place else np.empty(x.shape, dtype=dtype)
    # Statistics in the output dtype: rounding the mean to float32 errs by half an ulp of the mean, no more than
    # the rounding already in float32 data of that magnitude, and keeps the loop in float32 (twice as fast).
    mean_d = None if mean is None else mean.astype(dtype)
    factor_d = None if factor is None else factor.astype(dtype)
    # NumPy broadcasts a row of statistics over a block one row at a time, so with 20 features its inner loop is
    # 20 elements long and the loop overhead costs more than the copy. The statistics repeated ``reps`` times
    # line up with ``reps`` rows of a C-contiguous block viewed as one long row: inner loops of >= 4096
    # elements (1.5x faster in all, measured at 5e6 x 20).
    p = x.shape[1]
    reps = -(-_LONG_ROW // p)
    rows = max(reps, block_rows(p, dtype.itemsize) // reps * reps)
    long_mean = None if mean_d is None else np.tile(mean_d, reps)
    long_factor = None if factor_d is None else np.tile(factor_d, reps)

    def affine(target: NDArray[Any]) -> None:
        # ``target`` is C-contiguous (fresh output, or an input that had to be for in-place work), so the reshape
        # is a view and the arithmetic lands in ``target``.
        whole = target.shape[0] // reps * reps
        if whole:
            _affine_in_place(target[:whole].reshape(-1, reps * p), long_mean, long_factor, inverse=inverse)
        if whole < target.shape[0]:
            _affine_in_place(target[whole:], mean_d, factor_d, inverse=inverse)

    def check_finite(cached: NDArray[Any], source: NDArray[Any]) -> None:
        # NaN and inf in the source survive the affine map and a sum, so one sum of the cached block finds them.
        # einsum's plain vectorized sum: 1.5x (float64) to 2x (float32) faster than add.reduce's pairwise one,
        # whose accuracy a finiteness test does not need; not BLAS, whose threads would start beside ours (10%
        # slower on 2 cores). A non-finite sum only means "look closer" and the source decides (a finite block
        # whose sum overflows is no error: the caller's errstate keeps NumPy from warning about its own probe).
        if not np.isfinite(np.einsum("i->", cached.reshape(-1))):
            on_nonfinite(source)

    # One errstate per row range, not per block: entering it costs microseconds, 3% of a 512 KiB block's work.
    @np.errstate(over="ignore", invalid="ignore")
    def scan(start: int, stop: int) -> None:
        for first in range(start, stop, rows):
            block = x[first : min(first + rows, stop)]
            check_finite(block, block)

    @np.errstate(over="ignore", invalid="ignore")
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
