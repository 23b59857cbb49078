"""The registry's types: a case (a layer, correct or buggy) and the three kinds of call a checker receives.

A case is built for a dtype and a seed and returns the arguments of the checker's call together with the reference
the harness measures the bug against (a plain-torch forward whose autograd is the truth, a correct twin module, or
the true gradient of a NumPy loss). Nothing here states a bug's size: the harness measures it in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

Kind = Literal["function", "module", "numpy"]
#: "pass": a correct layer (no false alarm allowed); "fail": a buggy one; "no-hollow-pass": a check where
#: nothing (or next to nothing) can be judged: it may pass only if it says it judged most coordinates.
Expect = Literal["pass", "fail", "no-hollow-pass"]
DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class FunctionCall:
    """``check_function(fn, *inputs, names=names)``; ``reference(*inputs)`` is the plain-torch forward."""

    fn: Callable[..., torch.Tensor]
    inputs: tuple[Any, ...]
    names: tuple[str, ...]
    reference: Callable[..., torch.Tensor]


@dataclass(frozen=True)
class ModuleCall:
    """``check_module(model, loss_fn, batch)``; ``reference`` has the same parameter names and values, plain ops."""

    model: nn.Module
    loss_fn: Callable[..., torch.Tensor] | None
    batch: Any
    reference: nn.Module


@dataclass(frozen=True)
class NumpyCall:
    """``preflight.gradcheck(loss, params, grads)``; ``true_grads`` the correct gradient (None: nothing to compare)."""

    loss: Callable[[dict[str, np.ndarray]], float]
    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    true_grads: dict[str, np.ndarray] | None


Call = FunctionCall | ModuleCall | NumpyCall


@dataclass(frozen=True)
class Case:
    """One layer of the suite: built per (dtype, seed) by ``build``; correct, buggy, or one with nothing to judge."""

    name: str
    kind: Kind
    layer: str
    build: Callable[[str, int], Call]
    expect: Expect
    bug: str = ""
    dtypes: tuple[str, ...] = ("float64", "float32")
    notes: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def correct(self) -> bool:
        return self.expect == "pass"


CASES: list[Case] = []


def register(case: Case) -> Case:
    if any(c.name == case.name for c in CASES):
        raise ValueError(f"case name {case.name!r} registered twice")
    CASES.append(case)
    return case


def generator(seed: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(1000 * seed + salt)


def randn(shape: tuple[int, ...], gen: torch.Generator, dtype: str, scale: float = 1.0, shift: float = 0.0) -> Any:
    """Drawn in float64 then cast: a seed gives the same values (up to rounding) in both dtypes."""
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * scale + shift
    return x.to(DTYPES[dtype]).requires_grad_(True)


def step(dtype: str, magnitude: float = 1.0) -> float:
    """The default step of the checkers, ``cbrt(eps) * max(1, |x|)``: what "parked within h / 16" is measured in."""
    return float(torch.finfo(DTYPES[dtype]).eps) ** (1.0 / 3.0) * max(1.0, abs(magnitude))
