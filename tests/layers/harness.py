"""Run a built case through preflight's checker or through ``torch.autograd.gradcheck`` and read the verdict.

A verdict says whether the check passed, which tensors it named as failing, and how many coordinates it actually
judged (set aside as kinks or not checkable do not count). Both report types are read through what they share
(``passed``, ``parameters`` by name with ``passed``), so the harness survives a rewrite of the report.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from .registry import Call, FunctionCall, ModuleCall, NumpyCall
from .truth import Truth

#: A pass is hollow when it judged fewer than this share of the coordinates it was given (issue item 5).
JUDGED_SHARE = 0.5


@dataclass(frozen=True)
class Verdict:
    passed: bool  # False also when the checker raised or stopped
    failing: frozenset[str]  # tensors named as failing
    judged: int | None  # coordinates (Jacobian entries for a Function) actually judged; None: not known
    total: int | None  # coordinates given
    seconds: float
    error: str = ""  # the exception (or the stop) when the check did not give a verdict per tensor

    @property
    def hollow(self) -> bool:
        """A pass that judged nothing, or next to nothing."""
        if not self.passed or self.total is None:
            return False
        return self.total == 0 or (self.judged is not None and self.judged < JUDGED_SHARE * self.total)

    def caught(self) -> bool:
        return not self.passed

    def localized(self, truth: Truth) -> bool:
        """Failing, and every tensor it names as failing really holds the bug."""
        return bool(self.failing) and self.failing <= truth.affected

    def text(self, truth: Truth | None = None) -> str:
        """ "pass", "pass (hollow)", "FAIL", "FAIL (blames x)" where a named tensor holds no bug, "FAIL (none named)",
        "error" when the checker raised."""
        if self.passed:
            return "pass (hollow)" if self.hollow else "pass"
        if self.error and not self.failing and self.judged is None and self.total is None:
            return "error"
        if truth is None or not truth.affected:
            return "FAIL"
        if not self.failing:
            return "FAIL (none named)"
        wrong = sorted(self.failing - truth.affected)
        return f"FAIL (blames {', '.join(wrong)})" if wrong else "FAIL"


def run_ours(call: Call, reference: bool = True) -> Verdict:
    """preflight's checker: check_function, check_module or gradcheck, with default settings (``reference=False``:
    a float32 check without its float64 copy)."""
    from preflight import gradcheck
    from preflight.torch import check_function, check_module

    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if isinstance(call, FunctionCall):
                report = check_function(
                    call.fn, *call.inputs, names=list(call.names), forward_ad=False, reference=reference
                )
            elif isinstance(call, ModuleCall):
                report = check_module(call.model, call.loss_fn, call.batch, progress=False, reference=reference)
            else:
                params = {k: v.copy() for k, v in call.params.items()}
                report = gradcheck(call.loss, params, call.grads, progress=False)
    except Exception as exc:  # a checker that raises gives no pass
        return Verdict(False, frozenset(), None, None, time.perf_counter() - start, _one_line(exc))
    seconds = time.perf_counter() - start
    results = dict(getattr(report, "parameters", {}) or {})
    failing = frozenset(name for name, r in results.items() if not r.passed)
    judged, total = judged_counts(results)
    stopped = getattr(report, "stopped", None) or ""
    return Verdict(bool(report.passed), failing, judged, total, seconds, stopped)


def judged_counts(results: dict[str, Any]) -> tuple[int | None, int]:
    """(judged, given) coordinates over the tensors of a report.

    A result may say it outright (``judged``); otherwise the NumPy report's ``checked`` already leaves kinks out
    (its ``size`` is what was given), and the torch adapter's ``checked`` counts Jacobian entries with ``kinks``
    (a count) among them.
    """
    judged, total = 0, 0
    for r in results.values():
        explicit = getattr(r, "judged", None)
        kinks = getattr(r, "kinks", 0)
        given = getattr(r, "size", None)
        if given is not None and isinstance(kinks, list):  # the NumPy report: kinks listed, checked without them
            j, t = r.checked, given
        else:
            t = r.checked
            j = t - (kinks if isinstance(kinks, int) else len(kinks))
        judged += int(explicit) if explicit is not None else int(j)
        total += int(t)
    return judged, total


def run_torch(call: Call) -> Verdict:
    """``torch.autograd.gradcheck`` with its defaults (eps 1e-6, atol 1e-5, rtol 1e-3, every entry): its first
    mismatch names the input, which is the tensor it blames."""
    inputs, names, fn = _as_torch_function(call)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.autograd.gradcheck(fn, inputs)
    except Exception as exc:
        text = _one_line(exc)
        found = re.search(r"with respect to input (\d+)", str(exc))
        failing = frozenset({names[int(found.group(1))]}) if found else frozenset()
        return Verdict(False, failing, None, None, time.perf_counter() - start, "" if found else text)
    return Verdict(True, frozenset(), None, None, time.perf_counter() - start)


def _as_torch_function(call: Call) -> tuple[tuple[Any, ...], list[str], Any]:
    if isinstance(call, FunctionCall):
        inputs = tuple(
            x.detach().clone().requires_grad_(True) if isinstance(x, torch.Tensor) and x.requires_grad else x
            for x in call.inputs
        )
        return inputs, list(call.names), call.fn
    if isinstance(call, ModuleCall):
        return _module_function(call)
    return _numpy_function(call)


def _module_function(call: ModuleCall) -> tuple[tuple[Any, ...], list[str], Any]:
    model = call.model
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names = [n for n, _ in named]
    buffers = dict(model.named_buffers())
    batch = call.batch
    inputs, target = (batch, None) if isinstance(batch, torch.Tensor) else batch
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)

    def loss(*values: Any) -> Any:
        out = functional_call(model, {**dict(zip(names, values, strict=True)), **buffers}, inputs)
        if call.loss_fn is None:
            return out
        return call.loss_fn(out) if target is None else call.loss_fn(out, target)

    return tuple(p.detach().clone().requires_grad_(True) for _, p in named), names, loss


class _Given(torch.autograd.Function):
    """A NumPy loss as a torch function whose backward returns the given gradient (valid at the given point)."""

    @staticmethod
    def forward(ctx: Any, call: NumpyCall, names: list[str], *values: Any) -> Any:
        ctx.grads = [torch.as_tensor(call.grads[n]).to(v.dtype) for n, v in zip(names, values, strict=True)]
        params = {n: v.detach().numpy().copy() for n, v in zip(names, values, strict=True)}
        return torch.tensor(call.loss(params), dtype=values[0].dtype)

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return (None, None, *(g * grad for grad in ctx.grads))


def _numpy_function(call: NumpyCall) -> tuple[tuple[Any, ...], list[str], Any]:
    names = list(call.params)
    values = tuple(torch.from_numpy(np.array(call.params[n])).requires_grad_(True) for n in names)

    def loss(*v: Any) -> Any:
        return _Given.apply(call, names, *v)

    return values, names, loss


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"
