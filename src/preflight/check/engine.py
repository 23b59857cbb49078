"""Gradient checking: every coordinate (or a stratified sample), a verdict calibrated on measured noise, the bug named.

The check, in order:

1. The loss is evaluated twice at the given parameters; different values stop the check (the loss is random).
2. The rounding noise ``sigma`` of one loss value is measured (ECnoise, :func:`preflight.numdiff.estimate_noise`).
3. Every checked coordinate gets a central difference with the step ``cbrt(eps) max(1, |theta_i|)`` of its dtype.
   It passes when ``|analytic - numeric|`` is within what noise explains: ``10 sigma / h_i`` of rounding plus
   ``64 eps (|g_i| + rms(g))`` for the rounding of the analytic gradient itself.
4. A coordinate outside that gets a second look (4 more evaluations): Richardson extrapolation with its truncation
   estimate; then, at a 16 times shorter step, whether its one-sided differences disagree with the analytic value
   between them (a kink: ReLU at 0, max, abs). Kinks are reported and set aside.
5. Per tensor: the course's relative difference, the verdict, the worst coordinates; hints naming the kind of bug.

Perturbed losses come from an evaluator (:class:`PerturbedLoss`). The default perturbs the caller's arrays in
place, one coordinate at a time, and restores each value bit for bit (also when the loss raises); a structure-aware
evaluator (``preflight.nn.gradcheck``) computes all perturbed losses of a tensor at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.progress import progress_bar, should_show_progress
from preflight._util.validation import check_choice, check_in_range, check_positive_int, describe
from preflight.check import numdiff
from preflight.check.diagnosis import TensorEvidence, diagnose
from preflight.check.perturb import BlackBoxLoss, CountedLoss, PerturbedLoss
from preflight.check.report import COURSE_THRESHOLDS, Coordinate, GradcheckReport, TensorResult
from preflight.check.report import label as _label
from preflight.check.tree import flatten

__all__ = [
    "COURSE_THRESHOLDS",
    "BlackBoxLoss",
    "Coordinate",
    "GradcheckReport",
    "NondeterministicLossError",
    "PerturbedLoss",
    "TensorResult",
    "check",
    "gradcheck",
]

F64 = NDArray[np.float64]
Leaves = dict[str, NDArray[Any]]
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
#: Minimum coordinates per tensor when sampling.
MIN_PER_TENSOR = 16


class NondeterministicLossError(ValueError):
    """The loss gave two different values at the same parameters."""


# ---------------------------------------------------------------------------------------------------- helpers
def _leaves(params: Any) -> Leaves:
    leaves: Leaves = {}
    for name, value in flatten(params):
        if not isinstance(value, np.ndarray):
            raise ValueError(f"params[{name!r}]: expected a NumPy array (perturbed in place), got {describe(value)}")
        if not np.issubdtype(value.dtype, np.floating):
            why = (
                "an integer parameter cannot be moved by a small step (convert it with .astype(float), or leave it "
                "out of params)"
                if np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_
                else "check complex parameters as two real arrays (real and imaginary parts)"
                if np.issubdtype(value.dtype, np.complexfloating)
                else "only real floating-point arrays can be perturbed"
            )
            raise ValueError(f"params[{name!r}]: expected a floating dtype, got {value.dtype}: {why}")
        if not np.all(np.isfinite(value)):
            first = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
            raise ValueError(
                f"params[{name!r}]: expected finite values, got NaN/inf at {_label(name, value.shape, first)}"
            )
        if not value.flags.writeable:
            raise ValueError(f"params[{name!r}]: the array is read-only; the check perturbs it in place")
        if name in leaves:
            raise ValueError(f"params: two leaves share the name {name!r}")
        for other, seen in leaves.items():
            if np.may_share_memory(value, seen) and np.shares_memory(value, seen):
                raise ValueError(
                    f"params[{name!r}]: shares memory with params[{other!r}]; moving one would move the other "
                    "(pass separate arrays)"
                )
        leaves[name] = value
    if not leaves:
        raise ValueError("params: expected at least one array, got an empty structure")
    return leaves


def _analytic(grads: Any, params: Any, leaves: Leaves) -> dict[str, F64]:
    if callable(grads):
        grads = grads(params)
    named = dict(flatten(grads))
    missing, extra = sorted(set(leaves) - set(named)), sorted(set(named) - set(leaves))
    if missing or extra:
        raise ValueError(
            f"grads: expected the structure of params; missing {missing}, unexpected {extra}"
            if missing
            else f"grads: expected the structure of params; unexpected entries {extra}"
        )
    out: dict[str, F64] = {}
    for name, arr in leaves.items():
        g = np.asarray(named[name])
        if g.shape != arr.shape:
            raise ValueError(f"grads[{name!r}]: expected shape {arr.shape} (as params), got {describe(named[name])}")
        if not np.issubdtype(g.dtype, np.number):
            raise ValueError(f"grads[{name!r}]: expected a numeric array, got dtype {g.dtype}")
        g = g.astype(np.float64)
        if not np.all(np.isfinite(g)):
            first = tuple(int(i) for i in np.argwhere(~np.isfinite(g))[0])
            raise ValueError(f"grads[{name!r}]: expected finite values, got NaN/inf at {_label(name, g.shape, first)}")
        out[name] = g
    return out


@contextmanager
def _moved_all(leaves: Leaves) -> Iterator[Callable[[dict[str, F64]], None]]:
    """Move every leaf by a float64 offset (rounded to its dtype); everything is restored on exit."""
    saved = {name: arr.copy() for name, arr in leaves.items()}

    def move(offsets: dict[str, F64]) -> None:
        for name, arr in leaves.items():
            np.copyto(arr, (saved[name] + offsets[name]).astype(arr.dtype) if name in offsets else saved[name])

    try:
        yield move
    finally:
        for name, arr in leaves.items():
            np.copyto(arr, saved[name])


def _noise(value: Callable[[], float], leaves: Leaves, f0: float, seed: int) -> float:
    """Measured rounding noise of the loss: ECnoise along a random direction moving every coordinate a few ulps."""
    rng = np.random.default_rng(seed + 7919)
    eps = max(numdiff.machine_epsilon(a.dtype) for a in leaves.values())
    directions = {
        n: rng.choice([-1.0, 1.0], size=a.shape) * 16 * numdiff.machine_epsilon(a.dtype) * np.maximum(1.0, np.abs(a))
        for n, a in leaves.items()
    }
    values = []
    with _moved_all(leaves) as move:
        for k in range(16):
            move({n: k * d for n, d in directions.items()})
            values.append(value())
    return max(numdiff.estimate_noise(values), eps * abs(f0))


def _screen_directions(screen: Any) -> int:
    """``screen`` as a number of random directions: False -> 0 (no screen), True -> 3, or a positive integer."""
    if isinstance(screen, (bool, np.bool_)):
        return 3 if screen else 0
    if isinstance(screen, (int, np.integer)) and screen >= 1:
        return int(screen)
    raise ValueError(f"screen: expected True, False or a number of directions >= 1, got {describe(screen)}")


def _sample(leaves: Leaves, sample: int | float | None, rng: np.random.Generator) -> dict[str, NDArray[np.intp]]:
    total = sum(a.size for a in leaves.values())
    if sample is None:
        return {n: np.arange(a.size) for n, a in leaves.items()}
    if isinstance(sample, (float, np.floating)) and 0.0 < sample <= 1.0:
        fraction = float(sample)
    elif isinstance(sample, (int, np.integer)) and not isinstance(sample, (bool, np.bool_)) and sample >= 1:
        fraction = min(1.0, int(sample) / total)
    else:
        raise ValueError(
            f"sample: expected a fraction in (0, 1] or a number of coordinates >= 1, got {describe(sample)}"
        )
    out = {}
    for n, a in leaves.items():
        k = min(a.size, max(MIN_PER_TENSOR, math.ceil(fraction * a.size)))
        out[n] = np.sort(rng.choice(a.size, size=k, replace=False)) if k < a.size else np.arange(a.size)
    return out


def _detection(leaves: Leaves, index: dict[str, NDArray[np.intp]]) -> dict[float, float]:
    """For q in (1 %, 10 %): the smallest, over tensors, chance that a sample hits >= 1 of q N broken coordinates."""
    out = {}
    for q in (0.01, 0.1):
        worst = 1.0
        for n, a in leaves.items():
            size, k = a.size, index[n].size
            bad = max(1, math.ceil(q * size))
            log_miss = sum(math.log1p(-bad / (size - j)) if size - j > bad else -math.inf for j in range(k))
            worst = min(worst, 1.0 - math.exp(log_miss))
        out[q] = worst
    return out


# ---------------------------------------------------------------------------------------------------- the engine
@dataclass
class _Tensor:
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


def _actual_steps(t: _Tensor, offset: NDArray[Any], rows: NDArray[np.intp] | None = None) -> F64:
    rows = np.arange(t.index.size) if rows is None else rows
    out: F64 = np.abs(offset.reshape(-1)[t.index[rows]].astype(np.float64))
    return out


def _analytic_noise(t: _Tensor) -> F64:
    rms = float(np.sqrt(np.mean(t.g**2))) if t.g.size else 0.0
    out: F64 = ANALYTIC_FACTOR * numdiff.machine_epsilon(t.arr.dtype) * (np.abs(t.g.reshape(-1)[t.index]) + rms)
    return out


def _first_pass(
    tensors: list[_Tensor], evaluate: PerturbedLoss, f0: float, sigma: float, method: str, eps: float | None
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
            hp = _actual_steps(t, plus[t.name])
            est = numdiff.forward(f0, f_plus[t.name].reshape(-1)[t.index], hp, noise=ROUNDING_FACTOR * sigma)
            t.numeric, t.tolerance = est.value, est.error + _analytic_noise(t)
        return
    minus = {t.name: t.offsets(-1.0) for t in tensors}
    f_minus = evaluate(minus)
    for t in tensors:
        hp, hm = _actual_steps(t, plus[t.name]), _actual_steps(t, minus[t.name])
        fp, fm = f_plus[t.name].reshape(-1)[t.index], f_minus[t.name].reshape(-1)[t.index]
        d1 = (fp - fm) / (hp + hm)
        rounding = ROUNDING_FACTOR * sigma / ((hp + hm) / 2)
        if method == "central":
            t.numeric, t.tolerance = d1, rounding + _analytic_noise(t)
            continue
        plus2, minus2 = {t.name: t.offsets(2.0)}, {t.name: t.offsets(-2.0)}
        fp2, fm2 = evaluate(plus2)[t.name].reshape(-1)[t.index], evaluate(minus2)[t.name].reshape(-1)[t.index]
        d2 = (fp2 - fm2) / (_actual_steps(t, plus2[t.name]) + _actual_steps(t, minus2[t.name]))
        r = numdiff.richardson(
            numdiff.Estimate(d1, rounding), numdiff.Estimate(d2, rounding), (hp + hm) / 2, noise=ROUNDING_FACTOR * sigma
        )
        t.numeric, t.tolerance = r.value, r.error + _analytic_noise(t)


def _excess(analytic: F64, numeric: F64, tolerance: F64) -> F64:
    """``|analytic - numeric| / tolerance``; an exact match is 0 even where the tolerance is 0 (a loss that is
    exactly constant has no rounding noise), any other difference over a zero tolerance is inf."""
    gap = np.abs(analytic - numeric)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap == 0, 0.0, gap / tolerance)


def _second_look(t: _Tensor, evaluate: PerturbedLoss, f0: float, sigma: float) -> None:
    """Richardson, then the kink test, for the worst coordinates outside the first tolerance."""
    g = t.g.reshape(-1)[t.index]
    excess = _excess(g, t.numeric, t.tolerance)
    rows = np.flatnonzero(excess > 1.0)
    if rows.size == 0:
        return
    rows = rows[np.argsort(-excess[rows])][: max(MAX_REFINE, int(MAX_REFINE_SHARE * t.index.size))]
    values: dict[float, F64] = {}
    steps: dict[float, F64] = {}
    for scale in (1.0, -1.0, 2.0, -2.0, 1.0 / KINK_STEP_DIVISOR, -1.0 / KINK_STEP_DIVISOR):
        offset = t.offsets(scale, rows)
        values[scale] = evaluate({t.name: offset})[t.name].reshape(-1)[t.index[rows]]
        steps[scale] = _actual_steps(t, offset, rows)
    ga = g[rows]
    analytic = _analytic_noise(t)[rows]
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


def _result(t: _Tensor) -> tuple[TensorResult, TensorEvidence]:
    g = t.g.reshape(-1)[t.index]
    keep = ~t.kink
    a, n, tol = g[keep], t.numeric[keep], t.tolerance[keep]
    ratio = _excess(a, n, tol)
    failed = int(np.sum(ratio > 1.0))
    denominator = float(np.linalg.norm(n) + np.linalg.norm(a))
    difference = float(np.linalg.norm(n - a)) / denominator if denominator > 0 else 0.0
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


def gradcheck(
    loss: Callable[[Any], Any],
    params: Any,
    grads: Any,
    *,
    eps: float | None = None,
    sample: int | float | None = None,
    seed: int = 0,
    method: str = "central",
    screen: bool | int = False,
    evaluator: PerturbedLoss | None = None,
    progress: bool | None = None,
) -> GradcheckReport:
    """Check an analytic gradient against finite differences, coordinate by coordinate.

    Parameters
    ----------
    loss : callable
        ``loss(params) -> float``.
    params : array, or nested dict / list / tuple of float arrays
        Perturbed in place during the check and restored bit for bit (also when ``loss`` raises).
    grads : same structure as ``params``, or callable ``params -> grads``
        The analytic gradient under test.
    eps : float, optional
        Step base; the step of coordinate i is ``eps x max(1, |theta_i|)`` (default ``cbrt(machine eps)``).
    sample : int or float, optional
        Check a stratified random subset: a count of coordinates or a fraction (at least 16 per tensor).
    seed : int
        Seeds the sample, the screen's directions and the noise probe.
    method : {"central", "forward", "richardson"}
        First-pass formula (2, 1 or 4 loss evaluations per coordinate).
    screen : bool or int
        First check a few random directions (2 evaluations each; True means 3); coordinates are then checked
        only in the tensors whose own direction fails.
    evaluator : PerturbedLoss, optional
        Computes perturbed losses (default: :class:`BlackBoxLoss` on ``loss``).
    progress : bool, optional
        Progress bar (tqdm, if installed); by default shown when the check should take more than 2 s.

    Returns
    -------
    GradcheckReport

    Raises
    ------
    ValueError
        A non-scalar or non-finite loss, params and grads that do not match, integer or read-only parameters.
    NondeterministicLossError
        The loss differs between two calls at the same parameters.

    Examples
    --------
    >>> w = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> report = gradcheck(lambda p: float(np.sum(p["w"] ** 3)), {"w": w}, {"w": 3 * w**2})
    >>> report.passed, report.difference < 1e-9
    (True, True)
    >>> gradcheck(lambda p: float(np.sum(p["w"] ** 3)), {"w": w}, {"w": 6 * w**2}).hints
    ['w: analytic = 2.00 x numeric']
    """
    start = time.perf_counter()
    if not callable(loss):
        raise ValueError(f"loss: expected a callable loss(params) -> float, got {describe(loss)}")
    check_choice(method, name="method", allowed=numdiff.METHODS)
    directions = _screen_directions(screen)
    seed = check_positive_int(seed, name="seed", minimum=0)
    if eps is not None:
        check_in_range(eps, name="eps", low=0.0, high=1.0, low_open=True)
    leaves = _leaves(params)
    analytic = _analytic(grads, params, leaves)
    blackbox = BlackBoxLoss(loss, params, leaves)
    f0 = blackbox.unperturbed = blackbox.value()
    clock = time.perf_counter()
    again = blackbox.value("the same params, a second time")
    f0_time = time.perf_counter() - clock
    if again != f0:
        raise NondeterministicLossError(
            f"loss: two calls at the same params gave {f0!r} and {again!r}: the loss is random (dropout on? "
            "sampled mini-batch or noise?). Freeze it first: fixed data, and for the reference network fixed masks "
            "(masks = net.dropout_masks(rng, m); loss = lambda p: net.cost(p, X, y, masks=masks))."
        )
    rng = np.random.default_rng(seed)
    sigma = _noise(blackbox.value, leaves, f0, seed)
    index = _sample(leaves, sample, rng)
    notes: list[str] = []
    if directions:
        suspects = _screen(leaves, analytic, blackbox.value, f0, sigma, directions, rng, eps)
        notes.append(
            f"directional screen ({directions} random directions): "
            + (f"zoomed in on {sorted(suspects)}" if suspects else "no tensor failed, no coordinate checked")
        )
        index = {n: (i if n in suspects else i[:0]) for n, i in index.items()}
    tensors = [_Tensor(n, a, index[n], analytic[n]) for n, a in leaves.items()]
    for t in tensors:
        t.kink = np.zeros(t.index.size, dtype=bool)
    per_coordinate = {"central": 2, "forward": 1, "richardson": 4}[method]
    expected = per_coordinate * sum(t.index.size for t in tensors)
    show = should_show_progress(progress, expected * f0_time)
    with progress_bar(expected, show, desc="gradcheck") as tick:
        blackbox.progress = tick
        evaluate: PerturbedLoss = blackbox if evaluator is None else CountedLoss(evaluator, blackbox)
        active = [t for t in tensors if t.index.size]
        if active:
            _first_pass(active, evaluate, f0, sigma, method, eps)
            for t in active:
                _second_look(t, evaluate, f0, sigma)
    results, evidence = {}, []
    for t in tensors:
        results[t.name], e = _result(t)
        evidence.append(e)
    a_all = np.concatenate([e.analytic for e in evidence])
    n_all = np.concatenate([e.numeric for e in evidence])
    denominator = float(np.linalg.norm(n_all) + np.linalg.norm(a_all))
    difference = float(np.linalg.norm(n_all - a_all)) / denominator if denominator > 0 else 0.0
    checked_all = all(t.index.size == t.arr.size for t in tensors)
    evaluations = blackbox.evaluations
    return GradcheckReport(
        passed=all(r.passed for r in results.values()),
        difference=difference,
        parameters=results,
        hints=diagnose(evidence),
        dtype=", ".join(sorted({str(a.dtype) for a in leaves.values()})),
        method=method,
        noise=sigma,
        evaluations=evaluations,
        seconds=time.perf_counter() - start,
        sampled=not checked_all,
        detection=_detection(leaves, index) if sample is not None else {},
        notes=notes,
    )


def _screen(
    leaves: Leaves,
    analytic: dict[str, F64],
    value: Callable[[], float],
    f0: float,
    sigma: float,
    directions: int,
    rng: np.random.Generator,
    eps: float | None,
) -> set[str]:
    """Names of tensors whose directional derivative disagrees (all tensors when the joint screen fails)."""

    def disagrees(names: list[str]) -> bool:
        total = sum(leaves[n].size for n in names)
        for _ in range(directions):
            steps = {}
            for n in names:
                base = numdiff.step_size(leaves[n], eps=eps).astype(np.float64)
                steps[n] = rng.choice([-1.0, 1.0], size=leaves[n].shape) * base / math.sqrt(total)
            f = {}
            moved = {}
            with _moved_all(leaves) as move:
                for scale in (1.0, -1.0, 2.0, -2.0):
                    move({n: scale * s for n, s in steps.items()})
                    moved[scale] = {n: leaves[n].astype(np.float64) - 0.0 for n in names}
                    f[scale] = value()
            saved = {n: leaves[n].astype(np.float64) for n in names}
            dot = {s: sum(float(np.sum(analytic[n] * (moved[s][n] - saved[n]))) for n in names) for s in moved}
            d1, d2 = f[1.0] - f[-1.0], f[2.0] - f[-2.0]
            a1, a2 = dot[1.0] - dot[-1.0], dot[2.0] - dot[-2.0]
            # Richardson (4 D(h) - D(2h)) / 3 on both sides, times 2h: D(h) = d1 / 2h, D(2h) = d2 / 4h.
            numeric, expected = (4 * d1 - d2 / 2) / 3, (4 * a1 - a2 / 2) / 3
            analytic_noise = ANALYTIC_FACTOR * max(numdiff.machine_epsilon(leaves[n].dtype) for n in names)
            scale_a = sum(float(np.sum(np.abs(analytic[n] * steps[n]))) for n in names)
            # Rounding: (4 x 2 sigma + 2 sigma / 2) / 3 = 3 sigma; truncation: what the extrapolation changed.
            tolerance = 3 * ROUNDING_FACTOR * sigma + abs(numeric - d1) + analytic_noise * 2 * scale_a
            if abs(numeric - expected) > tolerance:
                return True
        return False

    names = list(leaves)
    if not disagrees(names):
        return set()
    return {n for n in names if disagrees([n])}


#: The engine under the name a structure-aware front end calls (``preflight.nn.gradcheck``).
check = gradcheck
