"""Gradient checks for PyTorch: custom autograd Functions and ops, per Jacobian entry.

The backward (and forward-mode AD where defined) is compared with central differences of real evaluations, element
by element, against the noise those differences can explain (calibrated for float32 as for float64). Complex values
are checked through their real and imaginary parts; an input element that is not finite gets no step; a step that
leaves the function's domain, or straddles a pole, is shrunk for that element before it is named as not checkable
(:mod:`preflight.check.function_steps`); with several outputs, each output's backward is also checked on its own.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from preflight._util.validation import check_in_range, check_positive_int
from preflight.check.diagnosis import TensorEvidence, diagnose
from preflight.check.function_report import conclusive, nothing_to_check, verdict_result
from preflight.check.function_steps import Verdict
from preflight.check.reference import before_reference, check_reference
from preflight.check.report import GradcheckReport, TensorResult
from preflight.check.verdict import relative_difference
from preflight.torch._function_check import FunctionCheck, Stopped
from preflight.torch._function_io import differentiable_kind
from preflight.torch._model import check_precision
from preflight.torch._reference import function_reference, needs_reference

__all__ = ["check_function", "run_function_check"]

A = NDArray[Any]


def _checked_positions(inputs: tuple[Any, ...]) -> list[int]:
    """Tensors with ``requires_grad`` (else every floating or complex one), validated: float32/float64 precision."""
    positions = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad]
    if not positions:
        positions = [i for i, x in enumerate(inputs) if differentiable_kind(x)]
    if not positions:
        raise ValueError("inputs: expected at least one floating-point (or complex) tensor to check")
    for i in positions:
        if not differentiable_kind(inputs[i]):
            raise ValueError(f"inputs[{i}]: expected a floating-point or complex tensor, got dtype {inputs[i].dtype}")
        real = inputs[i].real.dtype if inputs[i].is_complex() else inputs[i].dtype
        check_precision(real, f"inputs[{i}]", fix=f"pass inputs[{i}].double() (and fn in float64)")
        if inputs[i].device.type != "cpu":
            raise ValueError(f"inputs[{i}]: expected a CPU tensor, got a tensor on {inputs[i].device}; pass values on "
                             "the CPU, or mark the tensors to check with requires_grad=True")  # fmt: skip
    return positions


def check_function(
    fn: Callable[..., Any],
    *inputs: Any,
    eps: float | None = None,
    forward_ad: bool | None = None,
    richardson: bool = True,
    max_outputs: int = 1024,
    names: Sequence[str] | None = None,
    seed: int = 0,
    worst: int = 5,
    order: int = 1,
    reference: bool = True,
) -> GradcheckReport:
    """Check the backward (and forward-mode AD where defined) of ``fn`` against finite differences, per Jacobian entry.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs)`` returning a tensor or a tuple/list of tensors (an op, or ``MyFunction.apply``).
    *inputs
        Tensors with ``requires_grad=True`` are checked (every floating or complex tensor when none asks for it);
        anything else is passed through. The caller's tensors are never modified. Checked tensors must be float32 or
        float64 (float16 and bfloat16 are too coarse for finite differences), or complex64/complex128 (checked
        through their real and imaginary parts, as complex outputs are).
    eps : float, optional
        Fixed step; default ``cbrt(machine eps) * max(1, |x_i|)`` per element, exactly representable. Where the
        outputs are not finite at a step, it is halved for that element (a note names them).
    forward_ad : bool, optional
        Check forward-mode AD too. ``None``: where the function defines it (a note says when it does not).
    richardson : bool
        Also evaluate at +-2h: the truncation error is measured instead of assumed (default; inputs are small).
    max_outputs : int
        Up to this many output elements the whole Jacobian is checked; beyond, 16 random output projections.
    names : sequence of str, optional
        Names for the checked inputs (default "input0", "input1", ... by position).
    order : {1, 2}
        2: after the first-order check passes, the backward's own derivatives (double backward), with respect to
        the inputs and to ``grad_output``, in the report's ``second_order`` section
        (:mod:`preflight.torch.second_order`).
    reference : bool
        With a float32 (or complex64) input checked, run the same check on float64 copies of the inputs too
        (default), and fail an input that either check fails (:mod:`preflight.check.reference`): float32 differences
        resolve an error only to ~1e-4 of a Jacobian entry, the copies to 8 float32 ulps of the largest one. The
        float32 check still runs (it alone sees a backward that loses precision in float32). A function that does
        not run in float64 (an error, or float32 outputs from float64 inputs) is checked in float32 alone, with a
        note saying why.

    Returns
    -------
    GradcheckReport
        The report every preflight check returns (its ``unit`` is Jacobian entries). Per checked input, the worst
        entries name the input element and the output element. It passes with a note "0 elements, nothing to
        check" when there is no Jacobian entry at all, and does not pass (INCONCLUSIVE) when every entry was set
        aside. The check stops (``stopped`` says why, ``passed`` is False) when the function is random, or when an
        output is not finite at the given inputs.

    Raises
    ------
    ValueError
        No floating input to check, inputs in float16 or bfloat16, bad options.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    >>> check_function(torch.tanh, x).passed
    True
    >>> check_function(torch.fft.rfft, x).passed   # a complex output, through its real and imaginary parts
    True
    """
    check_reference(reference)
    copied = reference and needs_reference([inputs[i] for i in _checked_positions(inputs)])
    with before_reference() if copied else contextlib.nullcontext():
        report = _check_once(fn, inputs, eps, forward_ad, richardson, max_outputs, names, seed, worst, order)
    if copied:
        again = functools.partial(check_function, eps=eps, forward_ad=forward_ad, richardson=richardson,
                                  max_outputs=max_outputs, names=names, seed=seed, worst=worst, order=order,
                                  reference=False)  # fmt: skip
        report = function_reference(report, fn, inputs, again)
    return report


def _check_once(
    fn: Callable[..., Any], inputs: tuple[Any, ...], eps: float | None, forward_ad: bool | None, richardson: bool,
    max_outputs: int, names: Sequence[str] | None, seed: int, worst: int, order: int,
) -> GradcheckReport:  # fmt: skip
    """:func:`check_function` at the inputs' own precision."""
    if order == 2:
        from preflight.torch.second_order import check_function_twice

        report = check_function_twice(fn, *inputs, eps=eps, forward_ad=forward_ad, richardson=richardson,
                                      max_outputs=max_outputs, names=names, seed=seed, worst=worst)  # fmt: skip
    elif order != 1 or isinstance(order, bool):
        raise ValueError(f"order: expected 1 or 2, got {order!r}")
    else:
        report = run_function_check(FunctionCheck, fn, inputs, eps, forward_ad, richardson, max_outputs, names, seed,
                                    worst)  # fmt: skip
    return report


def run_function_check(
    job_type: type[FunctionCheck], fn: Callable[..., Any], inputs: tuple[Any, ...], eps: float | None,
    forward_ad: bool | None, richardson: bool, max_outputs: int, names: Sequence[str] | None, seed: int, worst: int,
) -> GradcheckReport:  # fmt: skip
    """:func:`check_function` at order 1, its work done by ``job_type`` (the second order's reads a backward's noise
    at the scale of its steps too: :mod:`preflight.torch._backward_noise`)."""
    check_positive_int(max_outputs, name="max_outputs")
    if eps is not None:
        eps = check_in_range(eps, name="eps", low=0.0, high=1.0, low_open=True)
    start = time.perf_counter()
    positions = _checked_positions(inputs)
    labels = list(names) if names is not None else [f"input{i}" for i in positions]
    if len(labels) != len(positions):
        raise ValueError(f"names: expected {len(positions)} names (one per checked input), got {len(labels)}")
    dtype = str(inputs[positions[0]].dtype).replace("torch.", "")
    method = "richardson" if richardson else "central"
    job = job_type(fn, inputs, positions, max_outputs, seed)

    def report(passed: bool, results: dict[str, TensorResult], **extra: Any) -> GradcheckReport:
        return GradcheckReport(
            passed=passed, parameters=results, dtype=dtype, method=method, evaluations=job.evaluations,
            seconds=time.perf_counter() - start, notes=job.notes, unit="Jacobian entries", **extra,
        )  # fmt: skip

    if job.entries == 0:
        inputs_seen = [(label, job.shape(i), job.locator(i)) for label, i in zip(labels, positions, strict=True)]
        return report(True, nothing_to_check(inputs_seen, worst, job.notes), difference=math.nan, hints=[], noise=0.0)
    try:
        job.require_usable()
        job.measure_noise()
        blocks = {i: job.columns(i, label, eps, richardson) for label, i in zip(labels, positions, strict=True)}
        job.read_quanta(blocks)
    except Stopped as stop:
        return report(False, {}, difference=math.nan, hints=[str(stop)], noise=0.0, stopped=str(stop))
    rows = job.analytic()
    backward: dict[str, TensorResult] = {}
    backward_verdicts: dict[str, Verdict] = {}
    evidence: list[TensorEvidence] = []
    a_all, n_all = [], []
    for label, i in zip(labels, positions, strict=True):
        a, v = job.judge_backward(blocks[i], rows[i])
        backward[label] = verdict_result(label, job.shape(i), a, v, worst, job.locator(i))
        backward_verdicts[label] = v
        evidence.append(job.evidence(label, i, a, v))
        keep = ~v.kink & ~v.skip
        a_all.append(a[keep])
        n_all.append(v.numeric[keep])
    forward = job.forward(blocks, labels, forward_ad)
    forward_results = None
    if forward is not None:
        forward_results = {label: verdict_result(label, job.shape(i), a, v, worst, job.locator(i))
                           for label, (i, a, v) in forward.items()}  # fmt: skip
    finite = any(block.finite.any() for block in blocks.values())
    proven = conclusive(list(backward_verdicts.values()), job.notes, any_finite=finite)
    passed = proven and all(r.passed for r in [*backward.values(), *(forward_results or {}).values()])
    return report(
        passed, backward, difference=relative_difference(np.concatenate(a_all), np.concatenate(n_all)),
        hints=diagnose(evidence), noise=job.noise, forward_ad=forward_results,
    )  # fmt: skip
