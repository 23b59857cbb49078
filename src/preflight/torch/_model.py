"""What the adapter needs to know about a torch model before it calls it: shared tensors, a safe functional call,
dtypes a finite-difference check can resolve, and the one message for a loss that is not a scalar.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import chain
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from preflight._util.validation import describe

__all__ = [
    "FunctionalModel", "check_precision", "describe_value", "expected_coordinates", "random_loss_message",
    "scalar_loss", "shared_parameters", "split_batch",
]  # fmt: skip

#: Dtypes a gradient check can judge. A central difference's relative error at the optimal step is about eps^(2/3):
#: 1 % of the gradient in float16 (eps 2^-10), 4 % in bfloat16 (eps 2^-7), with a tolerance of several times that;
#: such a check could not tell a gradient off by a few percent from a correct one.
CHECKABLE_DTYPES = (torch.float32, torch.float64)


def describe_value(value: Any) -> str:
    """Like :func:`preflight._validation.describe`, a tensor by its shape and dtype rather than its content."""
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {str(value.dtype).replace('torch.', '')}"
    return describe(value)


def scalar_loss(value: Any, what: str) -> torch.Tensor:
    """``value`` as a 0-d tensor, or ValueError naming ``what`` (``loss_fn``, or the model output without one)."""
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ValueError(
            f"{what}: expected a scalar tensor (the loss, reduced over the batch: a mean or a sum), "
            f"got {describe_value(value)}"
        )
    return value.reshape(())


def check_precision(dtype: torch.dtype, what: str, *, fix: str) -> None:
    """ValueError naming ``what`` when ``dtype`` is a floating type too coarse for a finite-difference check.

    ``fix`` says how to check in float64 instead.

    Examples
    --------
    >>> check_precision(torch.bfloat16, "inputs[0]", fix="pass x.double()")
    Traceback (most recent call last):
    ...
    ValueError: inputs[0]: dtype bfloat16 has too few significant bits for a gradient check ...
    """
    if dtype.is_floating_point and dtype not in CHECKABLE_DTYPES:
        eps = torch.finfo(dtype).eps
        name = str(dtype).replace("torch.", "")
        raise ValueError(
            f"{what}: dtype {name} has too few significant bits for a gradient check (machine eps {eps:.3g}: the "
            f"rounding of a finite difference would hide an error as large as the gradient itself); expected float32 "
            f"or float64: {fix}"
        )


def shared_parameters(model: nn.Module) -> dict[str, list[str]]:
    """Parameters reached under more than one name (tied weights, a module used twice), by their first name.

    Identity is what matters: two distinct Parameters that share storage are two leaves to autograd, and every
    strategy perturbs a copy of one of them, so they are checked consistently as independent tensors.

    Examples
    --------
    >>> lin = nn.Linear(2, 2)
    >>> shared_parameters(nn.Sequential(lin, nn.Tanh(), lin))
    {'0.weight': ['0.weight', '2.weight'], '0.bias': ['0.bias', '2.bias']}
    """
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return {found[0]: found for found in names.values() if len(found) > 1}


class FunctionalModel:
    """``model`` called with other values for its parameters and buffers, given by their (deduplicated) names.

    Every place a tensor sits gets its value exactly once, and ``functional_call`` runs with ``tie_weights=False``:
    its own tying expands the names of a module registered twice (``Sequential(lin, act, lin)``) into two swaps of
    the same attribute, and restores them in the wrong order, leaving the caller's module holding the working copy
    instead of its Parameter (torch 2.x). Tied tensors in distinct modules get the same value in each of them.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        canonical = {id(t): n for n, t in chain(model.named_parameters(), model.named_buffers())}
        # named_modules() lists each module once: each (module, attribute) slot appears once.
        self.slots = [(slot, canonical[id(t)]) for slot, t in _slots(model)]

    def __call__(self, values: dict[str, torch.Tensor], inputs: tuple[Any, ...]) -> Any:
        full = {slot: values[name] for slot, name in self.slots if name in values}
        return functional_call(self.model, full, inputs, tie_weights=False)


def _slots(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    for prefix, module in model.named_modules():
        own = chain(
            module.named_parameters(prefix=prefix, recurse=False, remove_duplicate=False),
            module.named_buffers(prefix=prefix, recurse=False, remove_duplicate=False),
        )
        yield from own


def split_batch(batch: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(inputs, targets) of ``batch``: a tensor of inputs, or a pair (inputs, target)."""
    if isinstance(batch, torch.Tensor):
        return (batch,), ()
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        inputs, target = batch
        return (tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)), (target,)
    raise ValueError(f"batch: expected a tensor of inputs or a pair (inputs, target), got {describe(batch)}")


def random_loss_message(model: nn.Module, values: tuple[float, float] | None) -> str:
    """The torch advice first: how to make this model's loss deterministic, then what was seen."""
    drop = any(isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0 for m in model.modules())
    advice = (
        "dropout is active (the model is in training mode): pass mode='eval' to check_module (or call model.eval())"
        if drop
        else "something in the model or the loss samples at random: seed it inside forward, or pass the random "
        "draw in as an input"
    )
    seen = "two calls at the same parameters differ" if values is None else (
        f"two calls at the same parameters gave {values[0]!r} and {values[1]!r}"
    )  # fmt: skip
    return f"loss: the loss is random, so finite differences mean nothing. In this model {advice}. ({seen})"


def expected_coordinates(total: int, sample: Any) -> int:
    """How many coordinates ``sample`` asks for, roughly (gradcheck validates it and rounds per tensor)."""
    if sample is None or isinstance(sample, bool):
        return total
    try:
        value = float(sample)
    except (TypeError, ValueError):
        return total
    fraction = value if isinstance(sample, (float, np.floating)) else value / max(total, 1)
    return math.ceil(total * min(1.0, max(0.0, fraction)))
