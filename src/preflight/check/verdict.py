"""The verdict on each coordinate: central differences, the tolerance that noise explains, the second look, kinks.

One checked tensor is a :class:`TensorCheck`; :func:`first_pass` fills its numeric gradient and tolerance, and
:func:`second_look` revisits every coordinate outside it (Richardson, then the kink test); :func:`tensor_result`
turns it into the report's :class:`~preflight.check.report.TensorResult` and the evidence for the hints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.check import numdiff
from preflight.check.diagnosis import TensorEvidence
from preflight.check.perturb import PerturbedLoss
from preflight.check.report import Coordinate, TensorResult

__all__ = [
    "ANALYTIC_FACTOR",
    "ROUNDING_FACTOR",
    "TensorCheck",
    "actual_steps",
    "analytic_noise",
    "excess_ratio",
    "first_pass",
    "relative_difference",
    "second_look",
    "tensor_result",
]

F64 = NDArray[np.float64]
#: Rounding allowance in units of sigma / h: the central difference's rounding error has standard deviation
#: ~0.7 sigma / h; 10 sigma / h is 14 standard deviations, room for the +-25 % uncertainty of the measured sigma
#: and for 1e5 coordinates without a false alarm.
ROUNDING_FACTOR = 10.0
#: Rounding of the analytic gradient, in units of eps (|g_i| + rms(g)): a float32 matrix product over a batch of
#: ~100 rows errs by a few sqrt(m) eps relative to its terms.
ANALYTIC_FACTOR = 64.0
#: At most max(64, a quarter of a tensor's checked coordinates) get the second look (worst first); the rest keep the
#: first verdict. A float32 ReLU network sends ~7 % of its coordinates there (kinks inside the 5e-3 step).
MAX_REFINE = 64
MAX_REFINE_SHARE = 0.25
#: The second look's short step for kinks: h / 16.
KINK_STEP_DIVISOR = 16
#: Evidence of a kink, in units of sigma per value: 3 standard deviations of the pure-noise statistic (a smooth
#: coordinate shows it 0.3 % of the time, and is then only set aside if the analytic value also fits the slopes).
KINK_EVIDENCE_FACTOR = 3.0
#: At most this share of a tensor's coordinates may be set aside on the short-step agreement alone.
NEAR_KINK_SHARE = 0.05
#: How many worst coordinates each tensor reports.
WORST = 5


@dataclass
class TensorCheck:
    name: str
    arr: NDArray[Any]
    index: NDArray[np.intp]
    g: F64
    h: F64 = field(default_factory=lambda: np.zeros(0))
    numeric: F64 = field(default_factory=lambda: np.zeros(0))
    tolerance: F64 = field(default_factory=lambda: np.zeros(0))
    kink: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, bool))

    def offsets(self, scale: float, subset: NDArray[np.intp] | None = None) -> NDArray[Any]:
        """Offsets (dtype of the tensor) of ``scale x h`` at the checked coordinates (or a subset of them)."""
        rows = np.arange(self.index.size) if subset is None else subset
        flat = self.arr.reshape(-1)
        theta = flat[self.index[rows]]
        target = (theta.astype(np.float64) + scale * self.h[rows]).astype(self.arr.dtype)
        out = np.zeros(self.arr.size, dtype=self.arr.dtype)
        out[self.index[rows]] = target - theta
        return out.reshape(self.arr.shape)


def actual_steps(t: TensorCheck, offset: NDArray[Any], rows: NDArray[np.intp] | None = None) -> F64:
    rows = np.arange(t.index.size) if rows is None else rows
    out: F64 = np.abs(offset.reshape(-1)[t.index[rows]].astype(np.float64))
    return out


def analytic_noise(t: TensorCheck) -> F64:
    rms = float(np.sqrt(np.mean(t.g**2))) if t.g.size else 0.0
    out: F64 = ANALYTIC_FACTOR * numdiff.machine_epsilon(t.arr.dtype) * (np.abs(t.g.reshape(-1)[t.index]) + rms)
    return out


def first_pass(
    tensors: list[TensorCheck], evaluate: PerturbedLoss, f0: float, sigma: float, method: str, eps: float | None
) -> None:
    for t in tensors:
        theta = t.arr.reshape(-1)[t.index]
        t.h = numdiff.step_size(theta, method="forward" if method == "forward" else "central", eps=eps).astype(
            np.float64
        )
    plus = {t.name: t.offsets(1.0) for t in tensors}
    f_plus = evaluate(plus)
    if method == "forward":
        for t in tensors:
            hp = actual_steps(t, plus[t.name])
            est = numdiff.forward(f0, f_plus[t.name].reshape(-1)[t.index], hp, noise=ROUNDING_FACTOR * sigma)
            t.numeric, t.tolerance = est.value, est.error + analytic_noise(t)
        return
    minus = {t.name: t.offsets(-1.0) for t in tensors}
    f_minus = evaluate(minus)
    for t in tensors:
        hp, hm = actual_steps(t, plus[t.name]), actual_steps(t, minus[t.name])
        fp, fm = f_plus[t.name].reshape(-1)[t.index], f_minus[t.name].reshape(-1)[t.index]
        d1 = (fp - fm) / (hp + hm)
        rounding = ROUNDING_FACTOR * sigma / ((hp + hm) / 2)
        if method == "central":
            t.numeric, t.tolerance = d1, rounding + analytic_noise(t)
            continue
        plus2, minus2 = {t.name: t.offsets(2.0)}, {t.name: t.offsets(-2.0)}
        fp2, fm2 = evaluate(plus2)[t.name].reshape(-1)[t.index], evaluate(minus2)[t.name].reshape(-1)[t.index]
        d2 = (fp2 - fm2) / (actual_steps(t, plus2[t.name]) + actual_steps(t, minus2[t.name]))
        r = numdiff.richardson(
            numdiff.Estimate(d1, rounding), numdiff.Estimate(d2, rounding), (hp + hm) / 2, noise=ROUNDING_FACTOR * sigma
        )
        t.numeric, t.tolerance = r.value, r.error + analytic_noise(t)


def relative_difference(analytic: NDArray[Any], numeric: NDArray[Any]) -> float:
    """``||n - a|| / (||n|| + ||a||)``, the course's metric (0 when both are zero).

    Examples
    --------
    >>> relative_difference(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    0.0
    """
    denominator = float(np.linalg.norm(numeric) + np.linalg.norm(analytic))
    return 0.0 if denominator == 0.0 else float(np.linalg.norm(numeric - analytic)) / denominator


def excess_ratio(analytic: F64, numeric: F64, tolerance: F64) -> F64:
    """``|analytic - numeric| / tolerance``; an exact match is 0 even where the tolerance is 0 (a loss that is
    exactly constant has no rounding noise), any other difference over a zero tolerance is inf."""
    gap = np.abs(analytic - numeric)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap == 0, 0.0, gap / tolerance)


def second_look(t: TensorCheck, evaluate: PerturbedLoss, f0: float, sigma: float) -> None:
    """Richardson, then the kink test, for the worst coordinates outside the first tolerance."""
    g = t.g.reshape(-1)[t.index]
    excess = excess_ratio(g, t.numeric, t.tolerance)
    rows = np.flatnonzero(excess > 1.0)
    if rows.size == 0:
        return
    rows = rows[np.argsort(-excess[rows])][: max(MAX_REFINE, int(MAX_REFINE_SHARE * t.index.size))]
    values: dict[float, F64] = {}
    steps: dict[float, F64] = {}
    for scale in (1.0, -1.0, 2.0, -2.0, 1.0 / KINK_STEP_DIVISOR, -1.0 / KINK_STEP_DIVISOR):
        offset = t.offsets(scale, rows)
        values[scale] = evaluate({t.name: offset})[t.name].reshape(-1)[t.index[rows]]
        steps[scale] = actual_steps(t, offset, rows)
    ga = g[rows]
    analytic = analytic_noise(t)[rows]
    d1 = (values[1.0] - values[-1.0]) / (steps[1.0] + steps[-1.0])
    d2 = (values[2.0] - values[-2.0]) / (steps[2.0] + steps[-2.0])
    h = (steps[1.0] + steps[-1.0]) / 2
    rich = numdiff.richardson(
        numdiff.Estimate(d1, 0 * d1), numdiff.Estimate(d2, 0 * d2), h, noise=ROUNDING_FACTOR * sigma
    )
    tolerance = rich.error + analytic
    settled = np.abs(ga - rich.value) <= tolerance
    # Chainer's test: the 4th difference of f over -2h..2h is noise (~8.4 sigma) plus h^4 f'''' for a smooth loss,
    # but about jump x h across a kink.
    fourth = values[2.0] - 4 * values[1.0] + 6 * f0 - 4 * values[-1.0] + values[-2.0]
    s, q = 1.0 / KINK_STEP_DIVISOR, -1.0 / KINK_STEP_DIVISOR
    # Or: a smooth loss's central difference at the short step agrees with the Richardson value within rounding
    # (its truncation is 256 times smaller than D(h)'s, which the Richardson error already covers).
    short = (values[s] - values[q]) / (steps[s] + steps[q])
    evidence = KINK_EVIDENCE_FACTOR * sigma
    kinked = (np.abs(fourth) > 8.4 * evidence) | (
        np.abs(short - rich.value) > evidence / np.minimum(steps[s], steps[q]) + tolerance
    )
    # The analytic value must lie among the one-sided slopes on either side (within their rounding noise).
    position = {scale: np.sign(scale) * steps[scale] for scale in steps} | {0.0: np.zeros_like(d1)}
    level = dict(values) | {0.0: np.full_like(d1, f0)}
    low, high = np.full_like(d1, np.inf), np.full_like(d1, -np.inf)
    for start, end in [(-2.0, -1.0), (-1.0, q), (q, 0.0), (0.0, s), (s, 1.0), (1.0, 2.0)]:
        width = position[end] - position[start]
        slope = (level[end] - level[start]) / width
        noise = 2 * ROUNDING_FACTOR * sigma / width
        low, high = np.minimum(low, slope - noise), np.maximum(high, slope + noise)
    among_all = (ga >= low - analytic) & (ga <= high + analytic)
    # Without that evidence (float32 rounding can hide it), the issue's own test: the one-sided differences at h
    # disagree beyond their noise and the analytic value lies between them.
    right, left = (values[1.0] - f0) / steps[1.0], (f0 - values[-1.0]) / steps[-1.0]
    noise_h = 2 * ROUNDING_FACTOR * sigma / np.minimum(steps[1.0], steps[-1.0]) + analytic
    between = (ga >= np.minimum(left, right) - noise_h) & (ga <= np.maximum(left, right) + noise_h)
    kink = ~settled & ((kinked & among_all) | (between & (np.abs(right - left) > noise_h)))
    # Last, several kinks inside the step blur every slope at h (float32 ReLU networks): the analytic value agrees
    # with the central difference at h / 16 within its (16 times larger) rounding. Only a few coordinates of a
    # tensor may be excused so: a discrepancy across the tensor is a bug, not kinks.
    near = ~settled & ~kink & (np.abs(ga - short) <= ROUNDING_FACTOR * sigma / np.minimum(steps[s], steps[q]))
    if near.sum() <= max(2, NEAR_KINK_SHARE * t.index.size):
        kink |= near
    t.numeric[rows] = np.where(settled, rich.value, t.numeric[rows])
    t.tolerance[rows] = np.where(settled, tolerance, t.tolerance[rows])
    t.kink[rows] = kink


def tensor_result(t: TensorCheck) -> tuple[TensorResult, TensorEvidence]:
    g = t.g.reshape(-1)[t.index]
    keep = ~t.kink
    a, n, tol = g[keep], t.numeric[keep], t.tolerance[keep]
    ratio = excess_ratio(a, n, tol)
    failed = int(np.sum(ratio > 1.0))
    difference = relative_difference(a, n)
    shape = tuple(t.arr.shape)

    def coordinate(rows: NDArray[np.intp], where: NDArray[np.bool_]) -> list[Coordinate]:
        idx = t.index[where][rows]
        return [
            Coordinate(
                tuple(int(i) for i in np.unravel_index(int(k), shape)) if shape else (),
                float(g[where][r]),
                float(t.numeric[where][r]),
                float(t.tolerance[where][r]),
            )
            for r, k in zip(rows.tolist(), idx.tolist(), strict=True)
        ]

    worst_rows = np.argsort(-ratio)[:WORST]
    result = TensorResult(
        name=t.name,
        shape=shape,
        size=int(t.arr.size),
        checked=int(keep.sum()),
        difference=difference,
        passed=failed == 0,
        failed=failed,
        significance=float(ratio.max()) if ratio.size else 0.0,
        worst=coordinate(worst_rows, keep),
        kinks=coordinate(np.arange(int(t.kink.sum())), t.kink),
    )
    theta = t.arr.reshape(-1)[t.index][keep].astype(np.float64)
    evidence = TensorEvidence(t.name, shape, t.index[keep], a, n, theta, tol, failed > 0)
    return result, evidence
