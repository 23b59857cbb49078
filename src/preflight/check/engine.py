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

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.blas import limit_blas_threads
from preflight._util.heap import settle_heap
from preflight._util.progress import progress_bar, should_show_progress
from preflight._util.validation import check_choice, check_in_range, check_positive_int, describe
from preflight.check import numdiff, second_order
from preflight.check.diagnosis import batch_size, diagnose
from preflight.check.distributed import check_client, distributed_loss
from preflight.check.float64_look import Float64Copy, float64_look
from preflight.check.inputs import (
    Leaves,
    analytic_gradient,
    detection_chance,
    measure_noise,
    moved_all,
    parameter_leaves,
    sample_coordinates,
    screen_directions,
)
from preflight.check.numdiff import COARSE_EPSILON
from preflight.check.numpy_reference import ARRAYS_NOTE, numpy_reference
from preflight.check.perturb import BlackBoxLoss, CountedLoss, PerturbedLoss
from preflight.check.pooled import pooled_look, wide_pooled_look
from preflight.check.reference import check_reference
from preflight.check.report import COURSE_THRESHOLDS, Coordinate, GradcheckReport, TensorResult
from preflight.check.verdict import (
    ANALYTIC_FACTOR,
    JUDGED_SHARE,
    ROUNDING_FACTOR,
    TensorCheck,
    first_pass,
    relative_difference,
    second_look,
    tensor_result,
)

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


class NondeterministicLossError(ValueError):
    """The loss gave two different values at the same parameters."""


@limit_blas_threads
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
    batch: Any = None,
    hvp: Callable[[Any, Any], Any] | None = None,
    client: Any = None,
    reference: bool | None = None,
) -> GradcheckReport:
    """Check an analytic gradient against finite differences, coordinate by coordinate.

    Parameters
    ----------
    loss : callable
        ``loss(params) -> float``.
    params : array, or nested dict / list / tuple of float arrays
        Perturbed in place during the check and restored bit for bit (also when ``loss`` raises).
    grads : same structure as ``params``, or callable ``params -> grads``
        The analytic gradient under test. The course's naming is accepted too: ``{"dW1": ..., "db1": ..., "dZ1":
        ...}`` for params ``{"W1": ..., "b1": ...}`` (entries that are no parameter's gradient are named in a note).
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
    batch : int, array or (X, Y), optional
        The batch the loss averages over (samples as rows or as columns), or its size m: a hint then names a
        factor m as a missing 1/m (see :func:`preflight.check.diagnosis.batch_size`).
    hvp : callable, optional
        ``hvp(params, v) -> H v`` (structured as params): after the first-order check passes, Hessian-vector
        products are checked against central differences of ``grads`` (then a callable), entry by entry, in the
        report's ``second_order`` section (:mod:`preflight.check.second_order`).
    client : dask.distributed.Client, optional
        Compute the perturbed losses on a Dask cluster (:mod:`preflight.check.distributed`): the loss and a copy of
        ``params`` (or the ``evaluator``) are shipped once per worker, the coordinates go out in ranges, the losses
        come back into this check; the noise is measured and the verdict taken here. Same numbers as without.
    reference : bool, optional
        With float32 parameters and a callable ``grads``, run the same check at float64 copies of the parameters
        too, and fail a tensor either check fails (:mod:`preflight.check.numpy_reference`): float32 differences
        resolve about 1e-3 of a ReLU network's gradient, float64's a million times finer. ``None`` (default): the
        copy is made unless the check is sampled or runs through an ``evaluator`` or a ``client``; ``True``: also
        when sampled; ``False``: never. Gradients given as arrays get no copy (they exist in float32 only).

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
    settle_heap()  # batched temporaries stay on the heap instead of being faulted in again (see its docstring)
    if not callable(loss):
        raise ValueError(f"loss: expected a callable loss(params) -> float, got {describe(loss)}")
    if hvp is not None:
        second_order.require_hvp(hvp, grads)
    check_choice(method, name="method", allowed=numdiff.METHODS)
    directions = screen_directions(screen)
    seed = check_positive_int(seed, name="seed", minimum=0)
    if eps is not None:
        check_in_range(eps, name="eps", low=0.0, high=1.0, low_open=True)
    if client is not None:
        check_client(client)
    check_reference(reference, optional=True)
    leaves = parameter_leaves(params)
    m, batch_note = batch_size(batch, leaves)
    notes: list[str] = [batch_note] if batch_note else []
    analytic = analytic_gradient(grads, params, leaves, notes)
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
    sigma, rounding = measure_noise(blackbox.value, leaves, f0, seed, blackbox.output_epsilon)
    index = sample_coordinates(leaves, sample, rng)
    if directions:
        suspects = _screen(leaves, analytic, blackbox.value, f0, sigma, directions, rng, eps)
        notes.append(
            f"directional screen ({directions} random directions): "
            + (f"zoomed in on {sorted(suspects)}" if suspects else "no tensor failed, no coordinate checked")
        )
        index = {n: (i if n in suspects else i[:0]) for n, i in index.items()}
    tensors = [TensorCheck(n, a, index[n], analytic[n]) for n, a in leaves.items()]
    for t in tensors:
        t.kink = np.zeros(t.index.size, dtype=bool)
    per_coordinate = {"central": 2, "forward": 1, "richardson": 4}[method]
    expected = per_coordinate * sum(t.index.size for t in tensors)
    show = should_show_progress(progress, expected * f0_time)
    # A float32 NumPy loss read at float64 copies of the parameters too (built only where a look needs it).
    # (evaluator=: where it says its loss is NumPy code of the parameters, as preflight.nn's network cost is)
    numpy_loss = evaluator is None or getattr(evaluator, "loss_at_float64", False) is True
    plain_float32 = rounding >= COARSE_EPSILON and numpy_loss and client is None
    wide = Float64Copy(loss, params, seed) if plain_float32 else None
    with progress_bar(expected, show, desc="gradcheck") as tick:
        blackbox.progress = tick
        inner = evaluator if client is None else distributed_loss(client, evaluator, loss, params, f0, f0_time)
        evaluate: PerturbedLoss = blackbox if inner is None else CountedLoss(inner, blackbox)
        active = [t for t in tensors if t.index.size]
        if active:
            first_pass(active, evaluate, f0, sigma, method, eps, rounding)
            for t in active:
                second_look(t, evaluate, f0, sigma)
            if wide is not None and (cleared := float64_look(wide, active)):  # preflight.check.float64_look
                notes.append(cleared)
    results, evidence = {}, []
    for t in tensors:
        results[t.name], e = tensor_result(t)
        evidence.append(e)
    pooled = []
    # float32: the coordinates of a passing tensor moved together too (preflight.check.pooled), not in a sampled check
    # (of a model too large for 6 to 62 more evaluations each); in float32 where no coordinate was set aside as a
    # kink, else at the float64 copies where the loss computes in float64 there (a NumPy loss)
    kinks = any(t.kink.any() for t in tensors)
    if rounding >= COARSE_EPSILON and sample is None and (not kinks or (wide is not None and wide.available)):
        for t in tensors:
            if results[t.name].passed and results[t.name].checked:
                if not kinks:
                    found = pooled_look(t, leaves, blackbox.value, f0, sigma, eps)
                else:
                    found = wide_pooled_look(t, wide, sigma, eps) if wide is not None else None
                if found is not None:
                    results[t.name] = dataclasses.replace(results[t.name], passed=False)
                    pooled.append(found.note())
    a_all = np.concatenate([e.analytic for e in evidence])
    n_all = np.concatenate([e.numeric for e in evidence])
    difference = relative_difference(a_all, n_all)
    checked_all = all(t.index.size == t.arr.size for t in tensors)
    evaluations = blackbox.evaluations + (wide.evaluations if wide is not None else 0)
    attempted, judged = sum(t.index.size for t in tensors), sum(r.checked for r in results.values())
    conclusive = judged >= JUDGED_SHARE * attempted and (judged > 0 or attempted == 0)
    if not conclusive:
        notes.append(
            f"inconclusive: {attempted - judged:,} of {attempted:,} coordinates sit at kinks or steps of the loss "
            "(a loss that is piecewise constant? parameters far below the step?); too few were judged to call it a pass"
        )
    report = GradcheckReport(
        passed=all(r.passed for r in results.values()) and conclusive,
        difference=difference,
        parameters=results,
        hints=diagnose(evidence, m) + pooled,
        dtype=", ".join(sorted({str(a.dtype) for a in leaves.values()})),
        method=method,
        noise=sigma,
        evaluations=evaluations,
        seconds=time.perf_counter() - start,
        sampled=not checked_all,
        detection=detection_chance(leaves, index) if sample is not None else {},
        notes=notes,
    )
    if hvp is not None:
        report = second_order.attach(
            report, lambda: second_order.check_hessian(params, leaves, grads, hvp, seed=seed, eps=eps)
        )
    single = any(numdiff.machine_epsilon(a.dtype) > COARSE_EPSILON for a in leaves.values())
    plain = evaluator is None and client is None and (sample is None or reference is True)
    if reference is not False and single and callable(grads) and plain:
        options = {"eps": eps, "sample": sample, "seed": seed, "method": method, "screen": screen, "batch": batch}
        copy_check = functools.partial(gradcheck, loss, progress=progress, reference=False, **options)
        report = numpy_reference(report, params, grads, copy_check)
    elif reference is None and single and plain and report.passed:
        report = dataclasses.replace(report, notes=[*report.notes, ARRAYS_NOTE])
    return report


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

    # Per tensor, fixed across directions: the step sizes, the float64 values the moves are measured from, and
    # sum |g_i h_i| (the signs of a direction drop out of it).
    base = {n: numdiff.step_size(a, eps=eps).astype(np.float64) for n, a in leaves.items()}
    saved = {n: a.astype(np.float64) for n, a in leaves.items()}
    weight = {n: float(np.vdot(np.abs(analytic[n]), base[n])) for n in leaves}

    def disagrees(names: list[str]) -> bool:
        total = sum(leaves[n].size for n in names)
        analytic_noise = ANALYTIC_FACTOR * max(numdiff.machine_epsilon(leaves[n].dtype) for n in names)
        scale_a = sum(weight[n] for n in names) / math.sqrt(total)
        for _ in range(directions):
            steps = {n: rng.choice([-1.0, 1.0], size=leaves[n].shape) * base[n] / math.sqrt(total) for n in names}
            f, dot = {}, {}
            with moved_all(leaves) as move:
                for scale in (1.0, -1.0, 2.0, -2.0):
                    move({n: scale * s for n, s in steps.items()})
                    f[scale] = value()
                    # The move as the dtype rounded it, against the analytic gradient: the expected change.
                    dot[scale] = sum(_moved_dot(analytic[n], leaves[n], saved[n]) for n in names)
            d1, d2 = f[1.0] - f[-1.0], f[2.0] - f[-2.0]
            a1, a2 = dot[1.0] - dot[-1.0], dot[2.0] - dot[-2.0]
            # Richardson (4 D(h) - D(2h)) / 3 on both sides, times 2h: D(h) = d1 / 2h, D(2h) = d2 / 4h.
            numeric, expected = (4 * d1 - d2 / 2) / 3, (4 * a1 - a2 / 2) / 3
            # Rounding: (4 x 2 sigma + 2 sigma / 2) / 3 = 3 sigma; truncation: what the extrapolation changed.
            tolerance = 3 * ROUNDING_FACTOR * sigma + abs(numeric - d1) + analytic_noise * 2 * scale_a
            if abs(numeric - expected) > tolerance:
                return True
        return False

    names = list(leaves)
    if not disagrees(names):
        return set()
    return {n for n in names if disagrees([n])}


def _moved_dot(analytic: F64, moved: NDArray[Any], saved: F64) -> float:
    """``sum(analytic * (moved - saved))`` in float64, with one temporary array."""
    change = moved.astype(np.float64)
    change -= saved
    return float(np.vdot(analytic, change))


#: The engine under the name a structure-aware front end calls (``preflight.nn.gradcheck``).
check = gradcheck
