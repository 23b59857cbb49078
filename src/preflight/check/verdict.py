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
from preflight.check.dense import GRID, closer_look
from preflight.check.diagnosis import TensorEvidence
from preflight.check.kinks import ROUNDING_FACTOR, SCALES, judge
from preflight.check.perturb import PerturbedLoss
from preflight.check.reference import resolution_floor
from preflight.check.report import Coordinate, TensorResult

__all__ = [
    "ANALYTIC_FACTOR",
    "JUDGED_SHARE",
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
#: Rounding of the analytic gradient, in units of eps (|g_i| + rms(g)): a float32 matrix product over a batch of
#: ~100 rows errs by a few sqrt(m) eps relative to its terms.
ANALYTIC_FACTOR = 64.0
#: A check whose coordinates were nearly all set aside as kinks proves nothing: below this judged share of the
#: coordinates it reads "inconclusive", not a pass (a loss that is a staircase, or parameters at +-1e-300, set
#: aside all of them). Correct ReLU networks stay far above it: a float32 one at batch 256 sets aside ~15 % of a
#: tensor, and a test that parks every first-layer unit at its kink about half of two small tensors.
JUDGED_SHARE = 0.1
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
    #: Loss values already taken at the checked coordinates, by position in units of h, and the signed steps.
    values: dict[float, F64] = field(default_factory=dict)
    positions: dict[float, F64] = field(default_factory=dict)

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
    out: F64 = np.abs(signed_steps(t, offset, rows))
    return out


def signed_steps(t: TensorCheck, offset: NDArray[Any], rows: NDArray[np.intp] | None = None) -> F64:
    """The moves actually made (after rounding to the tensor's dtype) at the checked coordinates, or ``rows``."""
    rows = np.arange(t.index.size) if rows is None else rows
    out: F64 = offset.reshape(-1)[t.index[rows]].astype(np.float64)
    return out


def analytic_noise(t: TensorCheck) -> F64:
    rms = float(np.sqrt(np.mean(t.g**2))) if t.g.size else 0.0
    out: F64 = ANALYTIC_FACTOR * numdiff.machine_epsilon(t.arr.dtype) * (np.abs(t.g.reshape(-1)[t.index]) + rms)
    return out


def first_pass(
    tensors: list[TensorCheck],
    evaluate: PerturbedLoss,
    f0: float,
    sigma: float,
    method: str,
    eps: float | None,
    output_epsilon: float = 0.0,
) -> None:
    """Numeric derivative and tolerance of every checked coordinate (``method``: central, forward, richardson).

    The step is ``cbrt(eps) max(1, |theta|)`` (``sqrt`` for forward) with ``eps`` the coarser of the tensor's
    dtype and the loss's own (``output_epsilon``: a float32 loss of float64 parameters rounds like float32).
    """
    for t in tensors:
        theta = t.arr.reshape(-1)[t.index]
        method_of_step = "forward" if method == "forward" else "central"
        base = eps
        if base is None and output_epsilon > numdiff.machine_epsilon(t.arr.dtype):
            base = output_epsilon ** (0.5 if method == "forward" else 1.0 / 3.0)
        t.h = numdiff.step_size(theta, method=method_of_step, eps=base).astype(np.float64)
    plus = {t.name: t.offsets(1.0) for t in tensors}
    f_plus = evaluate(plus)
    for t in tensors:
        t.values[1.0] = f_plus[t.name].reshape(-1)[t.index]
        t.positions[1.0] = signed_steps(t, plus[t.name])
    if method == "forward":
        for t in tensors:
            hp = actual_steps(t, plus[t.name])
            est = numdiff.forward(f0, f_plus[t.name].reshape(-1)[t.index], hp, noise=ROUNDING_FACTOR * sigma)
            t.numeric, t.tolerance = est.value, est.error + analytic_noise(t)
        return
    minus = {t.name: t.offsets(-1.0) for t in tensors}
    f_minus = evaluate(minus)
    for t in tensors:
        t.values[-1.0] = f_minus[t.name].reshape(-1)[t.index]
        t.positions[-1.0] = signed_steps(t, minus[t.name])
        hp, hm = t.positions[1.0], -t.positions[-1.0]
        fp, fm = t.values[1.0], t.values[-1.0]
        d1 = (fp - fm) / (hp + hm)
        rounding = ROUNDING_FACTOR * sigma / ((hp + hm) / 2)
        if method == "central":
            t.numeric, t.tolerance = d1, rounding + analytic_noise(t)
            continue
        plus2, minus2 = {t.name: t.offsets(2.0)}, {t.name: t.offsets(-2.0)}
        fp2, fm2 = evaluate(plus2)[t.name].reshape(-1)[t.index], evaluate(minus2)[t.name].reshape(-1)[t.index]
        t.values[2.0], t.values[-2.0] = fp2, fm2
        t.positions[2.0], t.positions[-2.0] = signed_steps(t, plus2[t.name]), signed_steps(t, minus2[t.name])
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
    """Richardson, then the kink and tie test (:func:`preflight.check.kinks.judge`), for every coordinate outside
    its first tolerance: values already taken are reused, the missing positions cost 2 to 4 evaluations each.

    Every coordinate the second look neither settles nor fails, and every one it sets aside as a kink, gets the
    closer look (:func:`preflight.check.dense.closer_look`, 56 evaluations more):

    - one that shows no kink to the second look but whose short difference agrees
      (:attr:`~preflight.check.kinks.Judgement.near`: several kinks within the step blur every other estimate, or
      a bug hides among them) is set aside only where the closer look sees a kink, judged on it otherwise;
    - one the second look set aside as a kink (its rules read seven values: a fourth difference beyond noise, the
      analytic value among the chords' slopes, which a bug beside a kink also meets) stays set aside unless the
      closer look finds the analytic value off every slope the point's piece could have
      (:attr:`~preflight.check.dense.Closer.off`: the located kinks explain the values, and no kink at the point,
      near it, or crowding it beyond the grid's resolution brings the slope there)."""
    g = t.g.reshape(-1)[t.index]
    rows = np.flatnonzero(excess_ratio(g, t.numeric, t.tolerance) > 1.0)
    if rows.size == 0:
        return
    values: dict[float, Any] = {0.0: f0}
    positions: dict[float, Any] = {0.0: 0.0}
    for scale in SCALES:
        if scale in t.values:
            values[scale], positions[scale] = t.values[scale][rows], t.positions[scale][rows]
            continue
        values[scale], positions[scale] = _values_at(t, evaluate, scale, rows)
    noise = analytic_noise(t)[rows]
    verdict = judge(values, positions, g[rows], noise, sigma)
    t.numeric[rows] = verdict.numeric
    t.tolerance[rows] = verdict.tolerance
    t.kink[rows] = verdict.kink
    looked = np.flatnonzero(verdict.near | verdict.kink)
    if looked.size == 0:
        return
    closer = rows[looked]
    dense_values: dict[float, Any] = {0.0: np.full(looked.size, f0)}
    dense_positions: dict[float, Any] = {0.0: np.zeros(looked.size)}
    for scale in GRID:
        if scale in values:
            dense_values[scale], dense_positions[scale] = values[scale][looked], positions[scale][looked]
        else:
            dense_values[scale], dense_positions[scale] = _values_at(t, evaluate, scale, closer)
    look = closer_look(dense_values, dense_positions, t.h[closer], g[closer], noise[looked], sigma)
    fails = ~look.kink & (excess_ratio(g[closer], look.numeric, look.tolerance) > 1.0)
    stands = verdict.kink[looked] & fails & ~look.off
    t.numeric[closer] = np.where(stands, t.numeric[closer], look.numeric)
    t.tolerance[closer] = np.where(stands, t.tolerance[closer], look.tolerance)
    t.kink[closer] = stands | look.kink


def _values_at(t: TensorCheck, evaluate: PerturbedLoss, scale: float, rows: NDArray[np.intp]) -> tuple[F64, F64]:
    """The loss with each of ``rows``' coordinates moved by ``scale x h`` (one at a time), and the moves made."""
    offset = t.offsets(scale, rows)
    value: F64 = evaluate({t.name: offset})[t.name].reshape(-1)[t.index[rows]]
    return value, signed_steps(t, offset, rows)


def tensor_result(t: TensorCheck) -> tuple[TensorResult, TensorEvidence]:
    g = t.g.reshape(-1)[t.index]
    keep = ~t.kink
    tolerance = t.tolerance + resolution_floor(g[keep])  # 0 but for a float64 copy (preflight.check.reference)
    a, n, tol = g[keep], t.numeric[keep], tolerance[keep]
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
                float(tolerance[where][r]),
            )
            for r, k in zip(rows.tolist(), idx.tolist(), strict=True)
        ]

    worst_rows = np.argsort(-ratio)[:WORST]
    inconclusive = bool(t.index.size > 0 and not keep.any())
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
        inconclusive=inconclusive,
    )
    theta = t.arr.reshape(-1)[t.index][keep].astype(np.float64)
    evidence = TensorEvidence(t.name, shape, t.index[keep], a, n, theta, tol, failed > 0)
    return result, evidence
