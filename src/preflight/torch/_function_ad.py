"""Autograd's side of ``check_function``: Jacobian rows by reverse mode, columns by forward mode.

Reverse mode is asked twice when a function has several outputs: once for all outputs together, and once per output
with the others left without a gradient (as ``y, mean, rstd = native_group_norm(...)`` is used when only ``mean``
feeds the loss). A backward that handles only the first case (``None`` for an input when the main output carries no
gradient) passes the first and fails the second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from preflight.torch._function_io import RealFunction, dense

__all__ = ["forward_columns", "reverse_rows"]

A = NDArray[Any]


def _vjp(output: torch.Tensor, wanted: Sequence[torch.Tensor], rows: torch.Tensor) -> list[A]:
    """``rows @ d output / d w`` for each w in ``wanted``, as ``(len(rows), w.numel())`` float64 arrays."""
    rows = rows.to(output.dtype)
    count = len(rows)
    try:
        grads = torch.autograd.grad(
            output, list(wanted), rows, retain_graph=True, allow_unused=True, is_grads_batched=True
        )
        stacked = [dense(g, (count, *w.shape), w.dtype) for g, w in zip(grads, wanted, strict=True)]
    except (RuntimeError, NotImplementedError):  # a backward vmap cannot batch: one row at a time
        per_row = [torch.autograd.grad(output, list(wanted), r, retain_graph=True, allow_unused=True) for r in rows]
        stacked = [
            torch.stack([dense(g[j], tuple(w.shape), w.dtype) for g in per_row])
            if per_row
            else torch.zeros((0, *w.shape), dtype=w.dtype)
            for j, w in enumerate(wanted)
        ]
    return [g.reshape(count, -1).double().numpy() for g in stacked]


def reverse_rows(io: RealFunction, project: torch.Tensor, positions: list[int]) -> dict[int, tuple[A, A | None]]:
    """Per checked input: the rows ``P @ J`` of all outputs' backward together, and (several outputs) the same rows
    summed over each output's backward alone; None for the second with one output."""
    leaves = [x.clone().requires_grad_(True) if i in positions else x for i, x in enumerate(io.inputs)]
    with torch.enable_grad():
        parts = io.parts(io.call(leaves))
        wanted = [leaves[i] for i in positions]
        joint = _vjp(torch.cat([t.reshape(-1) for t in parts]), wanted, project)
        alone: list[A] | None = None
        if len(parts) > 1:
            alone = [np.zeros_like(g) for g in joint]
            for part, block in zip(parts, io.blocks(), strict=True):
                rows = project[:, block]
                active = torch.nonzero(rows.abs().sum(dim=1) > 0).reshape(-1)
                if not part.numel() or not active.numel():
                    continue
                for total, g in zip(alone, _vjp(part.reshape(-1), wanted, rows[active]), strict=True):
                    total[active.numpy()] += g
    return {i: (joint[k], None if alone is None else alone[k]) for k, i in enumerate(positions)}


def forward_columns(io: RealFunction, project: torch.Tensor, i: int, elements: A) -> A:
    """Columns ``P @ J e_j`` of input i by forward-mode AD for the given elements (zeros elsewhere).

    Raises
    ------
    RuntimeError, NotImplementedError
        Forward-mode AD is not defined for the function (torch's own errors).
    """
    import torch.autograd.forward_ad as fwad

    make_dual: Any = fwad.make_dual  # untyped in torch's stubs
    unpack_dual: Any = fwad.unpack_dual
    x = io.inputs[i]
    out = np.zeros((len(project), x.numel()))
    for e in np.asarray(elements).tolist():
        tangent = torch.zeros_like(x).view(-1)
        tangent[e] = 1.0
        with fwad.dual_level():
            args = [make_dual(x, tangent.view(x.shape)) if j == i else v for j, v in enumerate(io.inputs)]
            parts = [
                dense(unpack_dual(t).tangent, (t.numel(),), torch.float64).reshape(-1).double()
                for t in io.parts(io.call(args))
            ]
        out[:, e] = (project @ torch.cat(parts).detach()).numpy() if parts else 0.0
    return out
