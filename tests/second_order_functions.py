"""Custom autograd Functions with hand-written double backwards, correct and with planted second-order bugs.

Shared by tests/test_torch_second_order.py and benchmarks/bench_second_order.py (the table in
docs/guides/second-order.md beside ``torch.autograd.gradgradcheck``). Every Function's first-order backward is right:
only a second-order check can tell the planted bugs from the correct ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable


def softplus(hessian_factor: float = 1.0) -> Callable[..., Any]:
    """``softplus(x)`` whose backward ``g sigmoid(x)`` goes through a custom sigmoid with its own backward, which
    multiplies the Hessian ``sigmoid'(x)`` by ``hessian_factor`` (1: correct; 2: the factor-2 bug; -1: a sign)."""

    class Sigmoid(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return torch.sigmoid(x)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(output)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (s,) = ctx.saved_tensors
            return hessian_factor * g * s * (1 - s)

    class Softplus(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return torch.nn.functional.softplus(x)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g * Sigmoid.apply(x)

    return Softplus.apply


def softplus_once_differentiable() -> Callable[..., Any]:
    """``softplus`` whose backward is marked ``@once_differentiable``: correct once, not differentiable again."""

    class Softplus(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return torch.nn.functional.softplus(x)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])

        @staticmethod
        @once_differentiable
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g * torch.sigmoid(x)

    return Softplus.apply


def softplus_detached() -> Callable[..., Any]:
    """``softplus`` whose backward computes ``sigmoid(x)`` from a detached ``x``: right values, no derivative."""

    class Softplus(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return torch.nn.functional.softplus(x)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g * torch.sigmoid(x.detach())

    return Softplus.apply


def multiply(missing_term: bool = False) -> Callable[..., Any]:
    """``x * w`` whose backward is a custom Function with a hand-written double backward; ``missing_term`` drops
    the term ``gg_w x`` from the derivative with respect to the incoming gradient (a product rule half applied)."""

    class MultiplyBackward(torch.autograd.Function):
        @staticmethod
        def forward(x: Any, w: Any, g: Any) -> Any:
            return g * w, g * x

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx: Any, gg_x: Any, gg_w: Any) -> Any:
            x, w, g = ctx.saved_tensors
            d_g = gg_x * w if missing_term else gg_x * w + gg_w * x
            return gg_w * g, gg_x * g, d_g

    class Multiply(torch.autograd.Function):
        @staticmethod
        def forward(x: Any, w: Any) -> Any:
            return x * w

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            x, w = ctx.saved_tensors
            return MultiplyBackward.apply(x, w, g)

    return Multiply.apply


def linear() -> Callable[..., Any]:
    """``x @ W.T + b`` with a backward written in differentiable torch ops: its double backward is autograd's."""

    class Linear(torch.autograd.Function):
        @staticmethod
        def forward(x: Any, w: Any, b: Any) -> Any:
            return x @ w.T + b

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(*inputs)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            x, w, _ = ctx.saved_tensors
            return g @ w, g.T @ x, g.sum(0)

    return Linear.apply


#: name -> (the Function, is it correct, its inputs' shapes, what is planted)
CASES: dict[str, tuple[Callable[[], Callable[..., Any]], bool, tuple[tuple[int, ...], ...], str]] = {
    "softplus": (softplus, True, ((3, 4),), "correct"),
    "multiply": (multiply, True, ((6,), (6,)), "correct"),
    "linear": (linear, True, ((5, 3), (4, 3), (4,)), "correct"),
    "softplus, Hessian x 2": (lambda: softplus(2.0), False, ((3, 4),), "factor 2 in the Hessian (sigmoid')"),
    "softplus, Hessian sign": (lambda: softplus(-1.0), False, ((3, 4),), "the Hessian's sign flipped"),
    "softplus, once_differentiable": (softplus_once_differentiable, False, ((3, 4),),
                                      "backward marked @once_differentiable"),
    "softplus, detached backward": (softplus_detached, False, ((3, 4),), "backward uses x.detach()"),
    "multiply, missing term": (lambda: multiply(True), False, ((6,), (6,)),
                               "double backward misses the term gg_w x"),
}  # fmt: skip


def inputs(shapes: tuple[tuple[int, ...], ...], dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    """Random inputs of the given shapes, requiring grad."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=generator, dtype=torch.float64).to(dtype).requires_grad_(True) for s in shapes]
