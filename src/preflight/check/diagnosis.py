"""Hints naming the kind of bug from the pattern of analytic vs numeric gradients, tensor by tensor.

Each rule looks at the checked coordinates of a failing tensor: a constant factor (``W2: analytic = 2.00 x
numeric``), a sign flip, a transposed gradient, zeros where the loss depends on the parameter (and the converse), a
discrepancy proportional to the parameter itself (a missing L2 term), a single wrong element; across tensors, one
common factor (a missing 1/m at the output).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.validation import describe

__all__ = ["TensorEvidence", "batch_size", "diagnose"]

F64 = NDArray[np.float64]
#: A fit explains a tensor when its residual is below this fraction of the discrepancy it explains (float32
#: numeric gradients carry ~1e-3 relative noise; real patterns fit to ~1e-2 or better).
FIT_TOLERANCE = 0.05

#: A whole factor at least this large is read as a batch size (a missing 1/m); smaller ones (2, 4) as plain factors.
MIN_BATCH = 8


@dataclass(frozen=True)
class TensorEvidence:
    """What the rules need about one tensor: checked flat indices and their values."""

    name: str
    shape: tuple[int, ...]
    index: NDArray[np.intp]  # flat indices of the checked coordinates (kinks removed)
    analytic: F64
    numeric: F64
    theta: F64
    tolerance: F64
    failed: bool


def _factor(analytic: F64, numeric: F64) -> tuple[float, float] | None:
    """Least-squares k with analytic ~ k numeric, and the relative residual; None without signal."""
    nn = float(numeric @ numeric)
    if nn == 0.0:
        return None
    k = float(analytic @ numeric) / nn
    residual = float(np.linalg.norm(analytic - k * numeric)) / max(float(np.linalg.norm(analytic)), 1e-300)
    return k, residual


def _label(name: str, shape: tuple[int, ...], flat: int) -> str:
    return f"{name}[{', '.join(str(int(i)) for i in np.unravel_index(flat, shape))}]" if shape else name


def _near(k: float, m: float) -> bool:
    """k equals m up to the 2 % a fitted factor carries (float32 numeric gradients: ~1e-3 relative noise)."""
    return abs(k - m) < 0.02 * abs(m)


def _batch_factor(k: float, m: int | None) -> str:
    """What a factor k says about the batch size: a missing or an extra 1/m (m known, or guessed from k)."""
    if m is not None:
        if m > 1 and _near(k, m):
            return f" (a missing 1/m with m = {m}?)"
        if m > 1 and _near(k, 1 / m):
            return f" (an extra 1/m with m = {m}?)"
        return ""
    if round(abs(k)) >= MIN_BATCH and abs(k - round(k)) < 0.02 * abs(k):
        return f" (a missing 1/m with m = {round(abs(k))}?)"
    if round(1 / abs(k)) >= MIN_BATCH and abs(1 / k - round(1 / k)) < 0.02 / abs(k):
        return f" (an extra 1/m with m = {round(abs(1 / k))}?)"
    return ""


def _tensor_hints(t: TensorEvidence, m: int | None = None) -> tuple[list[str], float | None]:
    a, n, tol = t.analytic, t.numeric, t.tolerance
    if a.size == 0:
        return [], None
    diff = np.abs(a - n)
    bad = diff > tol
    hints: list[str] = []
    zero_a = bad & (a == 0) & (np.abs(n) > tol)
    if zero_a.any() and zero_a.sum() >= 0.5 * bad.sum():
        hints.append(
            f"{t.name}: the analytic gradient is exactly 0 at {int(zero_a.sum())} coordinates where the loss does "
            f"depend on them (e.g. {_label(t.name, t.shape, int(t.index[np.argmax(zero_a)]))}): a missing term or a "
            "mask applied in the backward pass only?"
        )
    flat_n = bad & (np.abs(n) <= tol) & (np.abs(a) > tol)
    if flat_n.any() and flat_n.sum() >= 0.5 * bad.sum():
        hints.append(
            f"{t.name}: the analytic gradient is nonzero at {int(flat_n.sum())} coordinates the loss does not depend "
            f"on (e.g. {_label(t.name, t.shape, int(t.index[np.argmax(flat_n)]))}): a mask (dropout, ReLU) "
            "missing in the backward pass?"
        )
    if 0 < bad.sum() <= max(1, a.size // 50) and a.size >= 4:  # none off: the failure is not one element
        where = ", ".join(_label(t.name, t.shape, int(i)) for i in t.index[bad][:3])
        hints.append(
            f"{t.name}: only {int(bad.sum())} of {a.size} coordinates are off ({where}): a single wrong element "
            "(an index or a slice off by one?)"
        )
    fit = _factor(a, n)
    factor = None
    if fit is not None and fit[1] < FIT_TOLERANCE and abs(fit[0] - 1.0) > FIT_TOLERANCE:
        k = fit[0]
        factor = k
        if abs(k + 1.0) < FIT_TOLERANCE:
            hints.append(f"{t.name}: analytic = -1.00 x numeric: a sign flip")
        elif abs(k) < FIT_TOLERANCE:
            hints.append(f"{t.name}: analytic ~ 0 x numeric: the gradient of this tensor is (almost) zero")
        else:
            hints.append(f"{t.name}: analytic = {k:.2f} x numeric{_batch_factor(k, m)}")
    if len(t.shape) == 2 and t.shape[0] == t.shape[1] and factor is None:
        rows, cols = np.unravel_index(t.index, t.shape)
        transposed = np.ravel_multi_index((cols, rows), t.shape)
        lookup = dict(zip(t.index.tolist(), range(t.index.size), strict=True))
        pairs = [(r, lookup[int(c)]) for r, c in enumerate(transposed) if int(c) in lookup]
        if len(pairs) >= 4:
            mine, theirs = np.array(pairs).T
            if np.all(np.abs(a[mine] - n[theirs]) <= tol[mine] + tol[theirs]):
                hints.append(f"{t.name}: the analytic gradient is the transpose of the numeric one: W.T where W?")
    residual = a - n
    if bad.sum() >= 3 and float(t.theta @ t.theta) > 0:
        c = float(residual @ t.theta) / float(t.theta @ t.theta)
        rest = float(np.linalg.norm(residual - c * t.theta)) / max(float(np.linalg.norm(residual)), 1e-300)
        if rest < FIT_TOLERANCE and factor is None:
            side = "gradient" if c < 0 else "cost"
            hints.append(
                f"{t.name}: analytic - numeric = {c:.3g} x {t.name} (proportional to the parameter): the L2 term is "
                f"missing from the {side} (lambda / m = {abs(c):.3g})"
            )
    if not hints and bad.any():
        first = _label(t.name, t.shape, int(t.index[np.argmax(bad)]))
        hints.append(
            f"{t.name}: {int(bad.sum())} of {a.size} coordinates beyond the tolerance, no simple pattern (a factor, "
            f"sign, transpose or missing term would show); the worst are listed above, first at {first}"
        )
    return hints, factor


def diagnose(evidence: Sequence[TensorEvidence], m: int | None = None) -> list[str]:
    """Hints for the failing tensors; one hint instead of many when every tensor is off by the same factor.

    ``m`` is the batch size when known (:func:`batch_size`): a factor equal to it is read as a missing 1/m, a
    factor 1/m as an extra one, and nothing else is; unknown, a whole factor of at least :data:`MIN_BATCH` is
    guessed to be one.

    Examples
    --------
    >>> n = np.array([0.1, -0.2, 0.3, 0.05])
    >>> t = TensorEvidence("W2", (2, 2), np.arange(4), 2 * n, n, np.ones(4), np.full(4, 1e-6), True)
    >>> diagnose([t])
    ['W2: analytic = 2.00 x numeric']
    >>> diagnose([TensorEvidence("b1", (2, 2), np.arange(4), 3 * n, n, np.ones(4), np.full(4, 1e-6), True)], m=3)
    ['b1: analytic = 3.00 x numeric (a missing 1/m with m = 3?)']
    """
    found: dict[str, list[str]] = {}
    factors: dict[str, float] = {}
    for t in evidence:
        if t.failed:
            found[t.name], factor = _tensor_hints(t, m)
            if factor is not None:
                factors[t.name] = factor
    checked = [t for t in evidence if t.analytic.size]
    if len(factors) >= 2 and len(factors) == len(checked):
        values = np.array(list(factors.values()))
        if np.ptp(values) <= FIT_TOLERANCE * np.abs(values).max():
            k = float(np.median(values))
            batch = (m is not None and m > 1 and _near(k, m)) or (m is None and round(k) >= MIN_BATCH)
            return [
                f"every tensor is off by the same factor: analytic = {k:.2f} x numeric; the error sits where all "
                f"gradients start: the output delta dZ (a missing 1/m, with m = {m if m is not None else round(k)}?)"
                if batch
                else f"every tensor is off by the same factor: analytic = {k:.2f} x numeric; the error sits where "
                "all gradients start: the output delta dZ, or the scale of the cost"
            ]
    return [hint for hints in found.values() for hint in hints]


def batch_size(batch: Any, leaves: Mapping[str, NDArray[Any]]) -> tuple[int | None, str | None]:
    """The number of samples m in ``batch``, whichever axis holds them, and a note when it cannot be told.

    ``batch`` is m itself, the inputs ``X``, or ``(X, Y)``. Samples may be rows, ``X`` of shape (m, n_x), or
    columns as in the course, (n_x, m). With ``Y``, m is the one length X and Y share (``Y`` of shape (m,), (1, m)
    or (m, k)); from ``X`` alone, the features are the one axis whose length is the input size of the first weight
    matrix among ``leaves`` (the first layer's, read as (n_1, n_x), then as (n_x, n_1)), and m is the other axis.
    A 1-D array is read as labels (m of them); from 3 dimensions on, samples come first (images: (m, c, h, w)).

    Raises
    ------
    ValueError
        ``batch`` is none of these.

    Examples
    --------
    >>> W1 = np.zeros((5, 4))
    >>> batch_size(np.zeros((4, 3)), {"W1": W1}), batch_size(np.zeros((3, 4)), {"W1": W1})
    ((3, None), (3, None))
    >>> batch_size((np.zeros((4, 4)), np.array([1, 0, 1, 1])), {"W1": W1})
    (4, None)
    """
    if batch is None:
        return None, None
    if isinstance(batch, (int, np.integer)) and not isinstance(batch, (bool, np.bool_)):
        if batch < 1:
            raise ValueError(f"batch: expected a batch size m >= 1, inputs X, or (X, Y), got {batch!r}")
        return int(batch), None
    labels = None
    if isinstance(batch, tuple) and len(batch) == 2:
        batch, labels = batch
    X = np.asarray(batch) if isinstance(batch, np.ndarray) or hasattr(batch, "shape") else None
    if X is None or X.ndim == 0:
        raise ValueError(f"batch: expected a batch size m >= 1, inputs X, or (X, Y), got {describe(batch)}")
    if X.ndim == 1 or X.ndim >= 3:
        return int(X.shape[0]), None
    if labels is not None:
        shared = set(X.shape) & {n for n in np.shape(labels) if n > 1}
        if len(shared) == 1:
            return shared.pop(), None
    weights = next((a.shape for a in leaves.values() if a.ndim >= 2), ())
    # n_x is the first weights' input size: their last axis as the course, torch and preflight.nn store them
    # (out, in); then their first, for code that computes X @ W with W (in, out).
    for n_x in weights[::-1]:
        features = [axis for axis in (0, 1) if X.shape[axis] == n_x]
        if len(features) == 1:
            return int(X.shape[1 - features[0]]), None
    return None, (
        f"batch: could not tell which axis of X {X.shape} holds the samples (first weights {weights}); pass batch=m "
        "for the hint about a missing 1/m"
    )
