"""The truth for each case, measured in float64: the bug's relative size and which tensors it lives in.

For a Function, the Jacobian its backward gives against autograd through its own plain-ops forward; for a module,
the loss gradient of the model against its plain-ops twin; for a NumPy case, the given gradient against the true one.
``size = ||J_bug - J_true|| / ||J_true||`` over everything checked; per tensor, the same numerator restricted to the
tensor (over the same whole denominator), so the squares of the per-tensor sizes add up to the square of the size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from .registry import Call, Case, FunctionCall, ModuleCall

#: A tensor holds the bug when its share of the error is above this (relative to ||J_true||): far above the
#: float64 rounding of two backward passes (~1e-15), far below the smallest planted bug (~1e-7).
AFFECTED = 1e-11


@dataclass(frozen=True)
class Truth:
    size: float  # nan when the case has no reference (nothing to judge)
    per_tensor: dict[str, float]

    @property
    def affected(self) -> frozenset[str]:
        return frozenset(n for n, s in self.per_tensor.items() if s > AFFECTED)


def measure(case: Case, seed: int) -> Truth:
    """The bug's size for ``seed``, with the case built in float64."""
    dtype = "float64" if "float64" in case.dtypes else case.dtypes[0]
    call = case.build(dtype, seed)
    return truth_of(call)


def truth_of(call: Call) -> Truth:
    if isinstance(call, FunctionCall):
        checked = [x for x in call.inputs if isinstance(x, torch.Tensor) and x.requires_grad]
        given = _function_jacobians(call.fn, call.inputs, checked)
        true = _function_jacobians(call.reference, call.inputs, checked)
        return _compare(dict(zip(call.names, given, strict=True)), dict(zip(call.names, true, strict=True)))
    if isinstance(call, ModuleCall):
        return _compare(_module_gradient(call.model, call), _module_gradient(call.reference, call))
    if call.true_grads is None:
        return Truth(float("nan"), {})
    given_np = {k: np.asarray(v, dtype=np.float64) for k, v in call.grads.items()}
    true_np = {k: np.asarray(v, dtype=np.float64) for k, v in call.true_grads.items()}
    return _compare(given_np, true_np)


def _norm(values: list[np.ndarray]) -> float:
    """The 2-norm of all values together, scaled first (gradients of +-1e-300 parameters square to 0)."""
    flat = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values]) if values else np.zeros(0)
    top = float(np.max(np.abs(flat))) if flat.size else 0.0
    return top * float(np.linalg.norm(flat / top)) if top > 0 else 0.0


def _compare(given: dict[str, Any], true: dict[str, Any]) -> Truth:
    total = _norm(list(true.values()))
    per = {}
    for name, t in true.items():
        diff = np.asarray(given[name], dtype=np.float64) - np.asarray(t, dtype=np.float64)
        per[name] = _norm([diff]) / total if total > 0 else float("nan")
    size = float(np.sqrt(sum(v**2 for v in per.values()))) if per else float("nan")
    return Truth(size, per)


def _function_jacobians(fn: Any, inputs: tuple[Any, ...], checked: list[torch.Tensor]) -> list[np.ndarray]:
    """Rows d out[i] / d input: all rows in one batched backward, one backward per row where that fails."""
    leaves = [x.detach().double().requires_grad_(True) if any(x is c for c in checked) else x for x in inputs]
    wanted = [leaf for leaf, x in zip(leaves, inputs, strict=True) if any(x is c for c in checked)]
    with torch.enable_grad():
        out = fn(*leaves).reshape(-1)
        eye = torch.eye(out.numel(), dtype=out.dtype)
        try:
            grads = torch.autograd.grad(out, wanted, eye, retain_graph=True, allow_unused=True, is_grads_batched=True)
        except (RuntimeError, NotImplementedError):
            per_row = [torch.autograd.grad(out, wanted, row, retain_graph=True, allow_unused=True) for row in eye]
            grads = tuple(
                torch.stack([g[j] if g[j] is not None else torch.zeros_like(w) for g in per_row])
                for j, w in enumerate(wanted)
            )
    return [
        np.zeros((out.numel(), w.numel())) if g is None else g.detach().reshape(out.numel(), -1).numpy()
        for g, w in zip(grads, wanted, strict=True)
    ]


def _module_gradient(model: torch.nn.Module, call: ModuleCall) -> dict[str, np.ndarray]:
    double = {n: p.detach().double().requires_grad_(True) for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach().double() if b.is_floating_point() else b for n, b in model.named_buffers()}
    batch = call.batch
    inputs, target = (batch, None) if isinstance(batch, torch.Tensor) else batch
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    inputs = tuple(x.double() if x.is_floating_point() else x for x in inputs)
    with torch.enable_grad():
        out = functional_call(model, {**double, **buffers}, inputs)
        if call.loss_fn is None:
            loss = out
        elif target is None:
            loss = call.loss_fn(out)
        else:
            target = target.double() if target.is_floating_point() else target
            loss = call.loss_fn(out, target)
        grads = torch.autograd.grad(loss, list(double.values()), allow_unused=True)
    return {
        n: (np.zeros(p.shape) if g is None else g.detach().numpy())
        for (n, p), g in zip(double.items(), grads, strict=True)
    }
