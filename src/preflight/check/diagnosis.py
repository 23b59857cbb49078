"""Hints naming the kind of bug from the pattern of analytic vs numeric gradients, tensor by tensor.

Each rule looks at the checked coordinates of a failing tensor: a constant factor (``W2: analytic = 2.00 x
numeric``), a sign flip, a transposed gradient, zeros where the loss depends on the parameter (and the converse), a
discrepancy proportional to the parameter itself (a missing L2 term), a single wrong element; across tensors, one
common factor (a missing 1/m at the output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["TensorEvidence", "diagnose"]

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


def _tensor_hints(t: TensorEvidence) -> tuple[list[str], float | None]:
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
    if bad.sum() <= max(1, a.size // 50) and a.size >= 4:
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
            extra = ""
            if abs(k) >= MIN_BATCH and abs(k - round(k)) < 0.02 * abs(k):
                extra = f" (a missing 1/m with m = {round(abs(k))}?)"
            elif abs(k) <= 1 / MIN_BATCH and abs(1 / k - round(1 / k)) < 0.02 / abs(k):
                extra = f" (an extra 1/m with m = {round(abs(1 / k))}?)"
            hints.append(f"{t.name}: analytic = {k:.2f} x numeric{extra}")
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


def diagnose(evidence: Sequence[TensorEvidence]) -> list[str]:
    """Hints for the failing tensors; one hint instead of many when every tensor is off by the same factor.

    Examples
    --------
    >>> n = np.array([0.1, -0.2, 0.3, 0.05])
    >>> t = TensorEvidence("W2", (2, 2), np.arange(4), 2 * n, n, np.ones(4), np.full(4, 1e-6), True)
    >>> diagnose([t])
    ['W2: analytic = 2.00 x numeric']
    """
    found: dict[str, list[str]] = {}
    factors: dict[str, float] = {}
    for t in evidence:
        if t.failed:
            found[t.name], factor = _tensor_hints(t)
            if factor is not None:
                factors[t.name] = factor
    checked = [t for t in evidence if t.analytic.size]
    if len(factors) >= 2 and len(factors) == len(checked):
        values = np.array(list(factors.values()))
        if np.ptp(values) <= FIT_TOLERANCE * np.abs(values).max():
            k = float(np.median(values))
            return [
                f"every tensor is off by the same factor: analytic = {k:.2f} x numeric; the error sits where all "
                f"gradients start: the output delta dZ (a missing 1/m, with m = {round(k)}?)"
                if k >= MIN_BATCH
                else f"every tensor is off by the same factor: analytic = {k:.2f} x numeric; the error sits where "
                "all gradients start: the output delta dZ, or the scale of the cost"
            ]
    return [hint for hints in found.values() for hint in hints]
