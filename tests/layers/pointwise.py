"""GELU (exact, erf), leaky ReLU, maxout and a linear layer by hand; correct, buggy, and parked at kinks and ties.

Bugs: a wrong constant in the erf derivative, the tanh approximation's derivative behind the exact forward, the
pdf term dropped; a ReLU backward behind a leaky ReLU, a wrong negative slope; maxout's gradient sent to the first
unit of each group or spread over the group; a linear layer's last weight element skipped (a loop bound), its bias
gradient averaged instead of summed, its weight gradient transposed. The parked cases are correct: elements within
h / 16 of a kink (leaky ReLU at 0) or a tie (maxout), h the checkers' default step for the dtype.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .common import function_case
from .registry import generator, randn, step

# -- GELU, exact (erf) --------------------------------------------------------------------------------------------

#: 1 / sqrt(2 pi), the constant of the normal pdf (the erf derivative 2 / sqrt(pi) at x / sqrt(2), over 2 sqrt(2)).
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu_forward(x: Any) -> Any:
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu(bug: str = "", pdf_constant: float = INV_SQRT_2PI) -> type[torch.autograd.Function]:
    class GELU(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return gelu_forward(x)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            if bug == "tanh-approximation":
                c = math.sqrt(2.0 / math.pi)
                t = torch.tanh(c * (x + 0.044715 * x**3))
                return g * (0.5 * (1 + t) + 0.5 * x * (1 - t**2) * c * (1 + 3 * 0.044715 * x**2))
            cdf = 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
            if bug == "dropped-pdf-term":
                return g * cdf
            return g * (cdf + x * pdf_constant * torch.exp(-0.5 * x * x))

    return GELU


def activations(salt: int, scale: float = 1.5) -> Any:
    def inputs(dtype: str, seed: int) -> Any:
        return (randn((8, 16), generator(seed, salt), dtype, scale=scale),), ("x",)

    return inputs


GE = "GELU (erf)"
function_case("gelu", GE, gelu(), gelu_forward, activations(20))
for _constant, _text in [(0.3989, "0.3989 (four digits)"), (0.4, "0.4")]:
    function_case(
        f"gelu/pdf-constant-{_constant:g}", GE, gelu("constant", _constant), gelu_forward, activations(20),
        bug=f"the pdf's 1/sqrt(2 pi) = 0.398942... written {_text} (a wrong erf-derivative constant)",
    )  # fmt: skip
function_case(
    "gelu/tanh-approximation", GE, gelu("tanh-approximation"), gelu_forward, activations(20),
    bug="the tanh approximation's derivative behind the exact erf forward",
)  # fmt: skip
function_case(
    "gelu/dropped-pdf-term", GE, gelu("dropped-pdf-term"), gelu_forward, activations(20),
    bug="dx = g Phi(x), the x phi(x) term dropped",
)  # fmt: skip


# -- leaky ReLU ---------------------------------------------------------------------------------------------------

SLOPE = 0.01


def leaky_relu_forward(x: Any) -> Any:
    return torch.where(x > 0, x, SLOPE * x)


def leaky_relu(bug: str = "") -> type[torch.autograd.Function]:
    class LeakyReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return leaky_relu_forward(x)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            negative = {"relu-backward": 0.0, "wrong-slope": 0.2}.get(bug, SLOPE)
            return g * torch.where(x > 0, torch.ones_like(x), torch.full_like(x, negative))

    return LeakyReLU


#: Where parked elements sit, in units of the step h: all inside h / 16 (one exactly at the kink or tie).
PARKED = (0.0, 1 / 64, -1 / 64, 1 / 32, -1 / 20, 1 / 17)


def parked_at_zero(dtype: str, seed: int) -> Any:
    (x,), names = activations(21)(dtype, seed)
    h = step(dtype)
    with torch.no_grad():
        for j, where in enumerate(PARKED):
            x[j % 8, 2 * j] = where * h
    return (x,), names


LR = "leaky ReLU"
function_case("leaky-relu", LR, leaky_relu(), leaky_relu_forward, activations(21))
function_case(
    "leaky-relu/parked-at-kink", LR, leaky_relu(), leaky_relu_forward, parked_at_zero, tags=("kink",),
    notes="6 elements within h/16 of 0, one exactly at it",
)  # fmt: skip
function_case(
    "leaky-relu/relu-backward", LR, leaky_relu("relu-backward"), leaky_relu_forward, activations(21),
    bug="a plain ReLU backward (slope 0 for x < 0) behind the leaky forward (slope 0.01)",
)  # fmt: skip
function_case(
    "leaky-relu/wrong-slope", LR, leaky_relu("wrong-slope"), leaky_relu_forward, activations(21),
    bug="backward uses slope 0.2 for x < 0, the forward 0.01",
)  # fmt: skip


# -- maxout (groups of 2) -----------------------------------------------------------------------------------------

GROUP = 2


def maxout_forward(x: Any) -> Any:
    return x.reshape(x.shape[0], -1, GROUP).max(-1).values


def maxout(bug: str = "") -> type[torch.autograd.Function]:
    class Maxout(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            grouped = x.reshape(x.shape[0], -1, GROUP)
            values, index = grouped.max(-1)
            ctx.save_for_backward(index)
            ctx.shape = x.shape
            return values

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (index,) = ctx.saved_tensors
            dx = torch.zeros(*g.shape, GROUP, dtype=g.dtype)
            if bug == "spread":
                dx += (g / GROUP).unsqueeze(-1)
            else:
                where = torch.zeros_like(index) if bug == "first-unit" else index
                dx.scatter_(-1, where.unsqueeze(-1), g.unsqueeze(-1))
            return dx.reshape(ctx.shape)

    return Maxout


def parked_at_ties(dtype: str, seed: int) -> Any:
    (x,), names = activations(22)(dtype, seed)
    h = step(dtype)
    with torch.no_grad():
        for j, where in enumerate(PARKED):
            row, unit = j % 8, 2 * j % 8
            x[row, GROUP * unit + 1] = x[row, GROUP * unit] + where * h
    return (x,), names


MO = "maxout"
function_case("maxout", MO, maxout(), maxout_forward, activations(22))
function_case(
    "maxout/parked-at-tie", MO, maxout(), maxout_forward, parked_at_ties, tags=("kink",),
    notes="6 groups with their two units within h/16 of a tie, one exactly tied",
)  # fmt: skip
function_case(
    "maxout/first-unit", MO, maxout("first-unit"), maxout_forward, activations(22),
    bug="the gradient goes to the first unit of each group, not the argmax",
)  # fmt: skip
function_case(
    "maxout/spread", MO, maxout("spread"), maxout_forward, activations(22),
    bug="the gradient is spread evenly over the group",
)  # fmt: skip


# -- linear layer -------------------------------------------------------------------------------------------------


def linear_forward(x: Any, w: Any, b: Any) -> Any:
    return x @ w.T + b


def linear(bug: str = "") -> type[torch.autograd.Function]:
    class Linear(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, w: Any, b: Any) -> Any:
            ctx.save_for_backward(x, w)
            return linear_forward(x, w, b)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            x, w = ctx.saved_tensors
            dw = x.T @ g if bug == "transposed-weight" else g.T @ x
            if bug == "last-element-skipped":
                dw = dw.clone()
                dw[-1, -1] = 0.0
            db = g.mean(0) if bug == "bias-mean" else g.sum(0)
            return g @ w, dw, db

    return Linear


def linear_inputs(dtype: str, seed: int) -> Any:
    gen = generator(seed, 23)
    x = randn((16, 8), gen, dtype)
    w = randn((8, 8), gen, dtype, scale=1 / math.sqrt(8))
    b = randn((8,), gen, dtype, scale=0.1)
    return (x, w, b), ("x", "weight", "bias")


LI = "linear"
function_case("linear", LI, linear(), linear_forward, linear_inputs)
for _bug, _text in [
    ("last-element-skipped", "dW[-1, -1] never written (a loop bound off by one): one wrong element"),
    ("bias-mean", "db = mean of g over the batch, not the sum (a missing scale of 16)"),
    ("transposed-weight", "dW = x^T g, the transpose (square W: shapes agree)"),
]:
    function_case(f"linear/{_bug}", LI, linear(_bug), linear_forward, linear_inputs, bug=_text)


# -- a function whose output is narrower than its input (float64 in, float32 out: issue item 4) ------------------


def tanh_cast_forward(x: Any) -> Any:
    return torch.tanh(x).to(torch.float32)


def tanh_cast(factor: float = 1.0) -> type[torch.autograd.Function]:
    class TanhCast(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return tanh_cast_forward(x)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g.to(x.dtype) * (1 - torch.tanh(x) ** 2) * factor

    return TanhCast


TC = "tanh, float64 in, float32 out"
function_case("tanh-cast", TC, tanh_cast(), tanh_cast_forward, activations(24), dtypes=("float64",))
function_case(
    "tanh-cast/2%", TC, tanh_cast(1.02), tanh_cast_forward, activations(24), dtypes=("float64",),
    bug="the backward 2 % too large; the output is float32 though the input is float64 (issue item 4)",
)  # fmt: skip
