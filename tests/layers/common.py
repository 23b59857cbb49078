"""How a family of hand-written autograd Functions becomes cases: one forward in plain torch ops, a backward by hand.

The Function's forward runs the same plain-ops code as the reference (autograd is off inside ``forward``), so the
truth the harness measures a bug against is autograd through exactly what the Function computes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .registry import Case, Expect, FunctionCall, register

#: ``inputs(dtype, seed) -> (tensors, names of the checked ones)``
Inputs = Callable[[str, int], tuple[tuple[Any, ...], tuple[str, ...]]]


def function_case(
    name: str,
    layer: str,
    function: type[torch.autograd.Function],
    reference: Callable[..., torch.Tensor],
    inputs: Inputs,
    *,
    bug: str = "",
    expect: Expect | None = None,
    notes: str = "",
    dtypes: tuple[str, ...] = ("float64", "float32"),
    tags: tuple[str, ...] = (),
) -> Case:
    """Register a case checking ``function.apply`` on ``inputs``; buggy when ``bug`` describes a bug."""

    def build(dtype: str, seed: int) -> FunctionCall:
        tensors, names = inputs(dtype, seed)
        return FunctionCall(function.apply, tensors, names, reference)

    kind: Expect = expect or ("fail" if bug else "pass")
    return register(Case(name, "function", layer, build, kind, bug=bug, dtypes=dtypes, notes=notes, tags=tags))
