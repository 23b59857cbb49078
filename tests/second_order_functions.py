"""Custom autograd Functions with hand-written backwards and double backwards, correct and with planted bugs.

Shared by tests/test_torch_function.py (:func:`linear_function` and its first-order bugs),
tests/test_torch_second_order*.py and benchmarks/bench_second_order.py (the guide's table beside
``torch.autograd.gradgradcheck``, and its false-alarm sweep). In :data:`CASES` every Function's first-order
backward is right: only a second-order check can tell the planted bugs from the correct ones.
:data:`COMPOSITIONS` are correct compositions of torch ops (their double backward is autograd's), for the
false-alarm sweep; :func:`sweep` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from preflight.torch import check_function

F = torch.nn.functional


def from_output(forward: Callable[[Any], Any], derivative: Callable[[Any], Any]) -> type[torch.autograd.Function]:
    """A one-input Function ``forward`` that saves its output ``y`` and whose backward is ``g derivative(y)``
    (tanh, tan, sigmoid: their derivatives are functions of their outputs); differentiable again."""

    class FromOutput(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return forward(x)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(output)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (y,) = ctx.saved_tensors
            return g * derivative(y)

    return FromOutput


class _Softplus(torch.autograd.Function):
    """``softplus(x)``, saving x; the Functions below give it their backwards."""

    @staticmethod
    def forward(x: Any) -> Any:
        return F.softplus(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        ctx.save_for_backward(inputs[0])


def softplus(hessian_factor: float = 1.0) -> Callable[..., Any]:
    """``softplus(x)`` whose backward ``g sigmoid(x)`` goes through a custom sigmoid with its own backward, which
    multiplies the Hessian ``sigmoid'(x)`` by ``hessian_factor`` (1: correct; 2: the factor-2 bug; -1: a sign)."""

    Sigmoid = from_output(torch.sigmoid, lambda s: hessian_factor * s * (1 - s))

    class Softplus(_Softplus):
        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g * Sigmoid.apply(x)

    return Softplus.apply


def softplus_once_differentiable() -> Callable[..., Any]:
    """``softplus`` whose backward is marked ``@once_differentiable``: correct once, not differentiable again."""

    class Softplus(_Softplus):
        @staticmethod
        @once_differentiable
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g * torch.sigmoid(x)

    return Softplus.apply


def softplus_detached() -> Callable[..., Any]:
    """``softplus`` whose backward computes ``sigmoid(x)`` from a detached ``x``: right values, no derivative."""

    class Softplus(_Softplus):
        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g * torch.sigmoid(x.detach())

    return Softplus.apply


def tanh_linear(curvature_factor: float = 1.0) -> Callable[..., Any]:
    """``tanh(x @ W.T)`` through a custom tanh whose backward ``g (1 - t^2)`` goes through a custom Function of t
    with its own backward ``-2 t``, multiplied by ``curvature_factor`` (1: correct; 1.1: a 10 % error in the
    curvature, where saturated units make the backward's rounding the hardest to read)."""

    class Slope(torch.autograd.Function):
        @staticmethod
        def forward(t: Any) -> Any:
            return 1 - t * t

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (t,) = ctx.saved_tensors
            return -2 * curvature_factor * t * g

    Tanh = from_output(torch.tanh, Slope.apply)

    def fn(x: Any, w: Any) -> Any:
        return Tanh.apply(x @ w.T)

    return fn


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


#: The first-order bugs :func:`linear_function` plants (tests/test_torch_function.py).
LINEAR_BUGS = ("scale", "sign", "transpose", "broadcast")


def linear_function(bug: str | None = None) -> Any:
    """``y = x @ W.T + b`` (b of shape (1, n_out), broadcast over the batch) with a hand-written backward in
    differentiable torch ops (its double backward is autograd's), and one of :data:`LINEAR_BUGS` planted in it."""

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
            grad_x, grad_w, grad_b = g @ w, g.T @ x, g.sum(0, keepdim=True)
            if bug == "scale":
                grad_w = 2 * grad_w
            elif bug == "sign":
                grad_x = -grad_x
            elif bug == "transpose":
                grad_w = grad_w.T
            elif bug == "broadcast":
                grad_b = g[:1]  # the broadcast batch dimension not summed back: only the first row kept
            return grad_x, grad_w, grad_b

    return Linear


def linear() -> Callable[..., Any]:
    """The correct :func:`linear_function`, applied."""
    apply: Callable[..., Any] = linear_function().apply
    return apply


#: name -> (the Function, is it correct, its inputs' shapes, what is planted)
CASES: dict[str, tuple[Callable[[], Callable[..., Any]], bool, tuple[tuple[int, ...], ...], str]] = {
    "softplus": (softplus, True, ((3, 4),), "correct"),
    "multiply": (multiply, True, ((6,), (6,)), "correct"),
    "linear": (linear, True, ((5, 3), (4, 3), (1, 4)), "correct"),
    "tanh(x @ W.T)": (tanh_linear, True, ((5, 4), (3, 4)), "correct"),
    "softplus, Hessian x 2": (lambda: softplus(2.0), False, ((3, 4),), "factor 2 in the Hessian (sigmoid')"),
    "softplus, Hessian sign": (lambda: softplus(-1.0), False, ((3, 4),), "the Hessian's sign flipped"),
    "softplus, once_differentiable": (softplus_once_differentiable, False, ((3, 4),),
                                      "backward marked @once_differentiable"),
    "softplus, detached backward": (softplus_detached, False, ((3, 4),), "backward uses x.detach()"),
    "multiply, missing term": (lambda: multiply(True), False, ((6,), (6,)),
                               "double backward misses the term gg_w x"),
    "tanh(x @ W.T), curvature x 1.1": (lambda: tanh_linear(1.1), False, ((5, 4), (3, 4)),
                                       "tanh's second derivative 10 % off"),
}  # fmt: skip


#: Planted bug -> (the input whose second-order row fails, the gradient its failing entries name, a hint's words).
PLANTED = {
    "softplus, Hessian x 2": ("x", "grad x", "d(grad x)/dx: analytic = 2.00 x numeric"),
    "softplus, Hessian sign": ("x", "grad x", "d(grad x)/dx: analytic = -1.00 x numeric: a sign flip"),
    "softplus, once_differentiable": ("x", "grad x", "marked @once_differentiable"),
    "softplus, detached backward": ("x", "grad x", "computes it outside autograd"),
    "multiply, missing term": ("grad_output", "grad w", "d(grad w)/dgrad_output: the analytic gradient is exactly 0"),
    "tanh(x @ W.T), curvature x 1.1": ("x", "grad x", "d(grad x)/dx: analytic = 1.10 x numeric"),
}


def _mlp(x: Any, w1: Any, b1: Any, w2: Any, b2: Any) -> Any:
    """A two-layer perceptron's log-probabilities: tanh hidden units, a softmax head."""
    return torch.log_softmax(torch.tanh(x @ w1.T + b1) @ w2.T + b2, -1)


#: Correct compositions of torch ops -> (fn, its inputs' shapes): no second-order check may fail them.
COMPOSITIONS: dict[str, tuple[Callable[..., Any], tuple[tuple[int, ...], ...]]] = {
    "tanh": (torch.tanh, ((4, 5),)),
    "softplus": (F.softplus, ((4, 5),)),
    "gelu": (F.gelu, ((4, 5),)),
    "softmax": (lambda x: torch.softmax(x, -1), ((3, 6),)),
    "logsumexp": (lambda x: torch.logsumexp(x, -1), ((3, 6),)),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (6,), w, b), ((3, 6), (6,), (6,))),
    "tanh(x @ W.T)": (lambda x, w: torch.tanh(x @ w.T), ((5, 4), (3, 4))),
    "attention": (lambda q, k, v: torch.softmax(q @ k.T / 2, -1) @ v, ((3, 4), (5, 4), (5, 2))),
    "cross_entropy": (lambda z: F.cross_entropy(z, torch.tensor([0, 2, 1])), ((3, 4),)),
    "mlp": (_mlp, ((4, 3), (5, 3), (5,), (2, 5), (2,))),
}


def planted_found(name: str, report: Any) -> bool:
    """The planted bug ``name`` caught where :data:`PLANTED` says, the first order passing."""
    culprit, gradient, hint = PLANTED[name]
    if report.passed or report.second_order is None or not all(r.passed for r in report.parameters.values()):
        return False
    failing = report.second_order[culprit].failing()
    return any(c.output_name == gradient for c in failing) and any(hint in h for h in report.hints)


def sweep(seeds: int, dtypes: tuple[torch.dtype, ...] = (torch.float64, torch.float32)) -> dict[str, dict[str, str]]:
    """``check_function(order=2)`` over ``seeds`` draws of the inputs per dtype. For each composition: how many seeds
    fail, as ``"first order + second order"`` (a seed whose first order fails is not checked at the second); for
    each planted bug: how many are caught and located (:func:`planted_found`)."""
    out: dict[str, dict[str, str]] = {}
    for name, (fn, shapes) in COMPOSITIONS.items():
        out[name] = {}
        for d in dtypes:
            reports = [check_function(fn, *inputs(shapes, d, seed), order=2) for seed in range(seeds)]
            first = sum(report.second_order is None and not report.passed for report in reports)
            second = sum(not report.passed for report in reports) - first
            out[name][str(d).removeprefix("torch.")] = f"{first} + {second}"
    for name in PLANTED:
        make, _, shapes, _ = CASES[name]
        labels = ["x", "w", "b"][: len(shapes)]
        out[name] = {str(d).removeprefix("torch."): str(sum(
            planted_found(name, check_function(make(), *inputs(shapes, d, seed), order=2, names=labels))
            for seed in range(seeds)
        )) for d in dtypes}  # fmt: skip
    return out


def inputs(shapes: tuple[tuple[int, ...], ...], dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    """Random inputs of the given shapes, requiring grad."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=generator, dtype=torch.float64).to(dtype).requires_grad_(True) for s in shapes]
