"""Float64 copies of a float32 check's model, inputs and batch (:mod:`preflight.check.reference` merges the reports).

The copies hold the same values (every float32 number is a float64 number), so the float64 check runs the caller's
code at the same point; the caller's model and tensors are never touched. A copy is refused, with the reason, when
the code does not run in float64 (an error, or an output still in float32 because the layer casts inside).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from preflight.check.reference import FLOAT32_RESOLUTION, analytic_resolution, with_reference
from preflight.check.report import GradcheckReport
from preflight.torch._model import split_batch

__all__ = [
    "float64_model", "float64_values", "function_reference", "module_reference", "needs_reference",
    "single_precision_outputs",
]  # fmt: skip

#: Single-precision dtypes and their float64 counterparts.
WIDER = {torch.float32: torch.float64, torch.complex64: torch.complex128}


def needs_reference(tensors: list[torch.Tensor]) -> bool:
    """Whether any of the checked tensors is float32 (or complex64): a float64 copy resolves more there."""
    return any(t.dtype in WIDER for t in tensors)


def float64_values(value: Any) -> Any:
    """``value`` with every float32/complex64 tensor copied to float64/complex128 (``requires_grad`` kept), through
    tuples, lists and dicts; everything else as it is."""
    if isinstance(value, torch.Tensor):
        if value.dtype not in WIDER:
            return value
        return value.detach().to(WIDER[value.dtype]).requires_grad_(value.requires_grad)
    if isinstance(value, (tuple, list)):
        return type(value)(float64_values(v) for v in value)
    if isinstance(value, dict):
        return {k: float64_values(v) for k, v in value.items()}
    return value


def single_precision_outputs(output: Any) -> list[str]:
    """The dtypes of the float32/complex64 tensors in ``output`` (through tuples, lists, dicts): a float64 copy whose
    code still returns these computes in float32 somewhere inside."""
    if isinstance(output, torch.Tensor):
        return [str(output.dtype).replace("torch.", "")] if output.dtype in WIDER else []
    if isinstance(output, (tuple, list)):
        return [d for v in output for d in single_precision_outputs(v)]
    if isinstance(output, dict):
        return [d for v in output.values() for d in single_precision_outputs(v)]
    return []


def float64_model(model: nn.Module, loss_of: Callable[[nn.Module], Any]) -> tuple[nn.Module | None, str | None]:
    """A float64 copy of ``model`` whose loss (``loss_of(copy)``, computed once here on another copy, so that no
    running statistic moves) is float64; else None and why."""
    try:
        twin = copy.deepcopy(model).double()
        with torch.no_grad():
            narrow = single_precision_outputs(loss_of(copy.deepcopy(twin)))
    except Exception as error:  # any failure of the caller's code in float64 only means no copy
        return None, f"the model does not run in float64: {type(error).__name__}: {str(error)[:160]}"
    if narrow:
        return None, f"the float64 copy still returns {narrow[0]}: the model casts to float32 inside"
    return twin, None


def module_reference(
    report: GradcheckReport, model: nn.Module, loss_fn: Callable[..., Any] | None, batch: Any,
    check: Callable[[nn.Module, Any, Any], GradcheckReport], wanted: bool = True,
) -> GradcheckReport:  # fmt: skip
    """``report`` (a float32 module check) merged with ``check(copy, loss_fn, batch64)`` on a float64 copy of the
    model and batch, or with a note saying why no copy could be checked (``wanted`` False: a sampled check, where
    the copy is not made unless asked for)."""
    if not wanted:
        return with_reference(report, None, "a sampled check: pass reference=True to check a float64 copy too")
    wide = float64_values(batch)
    inputs, targets = split_batch(wide)

    def loss_of(twin: nn.Module) -> Any:
        output = twin(*inputs)
        return output if loss_fn is None else loss_fn(output, *targets)

    twin, why = float64_model(model, loss_of)
    if twin is None:
        return with_reference(report, None, why)
    try:
        with analytic_resolution(FLOAT32_RESOLUTION):
            again = check(twin, loss_fn, wide)
    except Exception as error:  # a copy that cannot be checked says nothing about the caller's model
        return with_reference(report, None, f"{type(error).__name__}: {str(error)[:160]}")
    return with_reference(report, again)


def function_reference(
    report: GradcheckReport, fn: Callable[..., Any], inputs: tuple[Any, ...], check: Callable[..., GradcheckReport]
) -> GradcheckReport:
    """``report`` (a float32 function check) merged with ``check(fn, *inputs64)`` on float64 copies of the inputs,
    or with a note saying why none could be checked."""
    wide = float64_values(inputs)
    try:
        with torch.no_grad():
            narrow = single_precision_outputs(fn(*wide))
        if narrow:
            return with_reference(report, None, f"fn returns {narrow[0]} from float64 inputs: it casts inside")
        with analytic_resolution(FLOAT32_RESOLUTION, report):
            again = check(fn, *wide)
    except Exception as error:  # a function that does not run in float64 says nothing about its float32 backward
        return with_reference(report, None, f"fn does not run in float64: {type(error).__name__}: {str(error)[:160]}")
    return with_reference(report, again)
