"""More hand-written layers of the kinds people write, with the bugs they make: SiLU/Swish with a temperature, and
RMSNorm with its epsilon in the wrong place (the backward divides by sqrt(mean(x^2)) + eps, the forward by
sqrt(mean(x^2) + eps)). Added beside the issue's first suite so that the rules are judged on layers and bug sizes
that the checker was not tuned on.
"""

from __future__ import annotations

from typing import Any

import torch

from .common import function_case
from .norms import rms_norm_inputs
from .registry import generator, randn

# -- Swish: x sigmoid(beta x) ---------------------------------------------------------------------------------------


def swish_forward(x: Any, beta: Any) -> Any:
    return x * torch.sigmoid(beta * x)


def swish(bug: str = "", scale: float = 1.0) -> type[torch.autograd.Function]:
    class Swish(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, beta: Any) -> Any:
            ctx.save_for_backward(x, beta)
            return swish_forward(x, beta)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            x, beta = ctx.saved_tensors
            s = torch.sigmoid(beta * x)
            slope = s * (1 - s)
            # The bugs: beta forgotten in the chain rule of sigmoid(beta x), written as a constant (scale x beta).
            inner = beta * scale if bug == "beta-constant" else (1.0 if bug == "beta-forgotten" else beta)
            dx = g * (s + x * inner * slope) if bug != "dropped-term" else g * s
            dbeta = (g * x * x * slope).sum().reshape(beta.shape)
            return dx, dbeta

    return Swish


def swish_inputs(dtype: str, seed: int) -> Any:
    gen = generator(seed, 61)
    x = randn((16, 12), gen, dtype, scale=2.0)
    beta = randn((1,), gen, dtype, scale=0.1, shift=1.5)
    return (x, beta), ("x", "beta")


SW = "Swish"
function_case("swish", SW, swish(), swish_forward, swish_inputs)
function_case(
    "swish/dropped-term", SW, swish("dropped-term"), swish_forward, swish_inputs,
    bug="dx = g sigmoid(beta x): the x beta sigmoid' term dropped",
)  # fmt: skip
function_case(
    "swish/beta-forgotten", SW, swish("beta-forgotten"), swish_forward, swish_inputs,
    bug="dx uses sigmoid'(beta x) without the inner beta (beta ~ 1.5)",
)  # fmt: skip
for _scale in (1.003, 1.00002):
    function_case(
        f"swish/beta-constant-{_scale:g}", SW, swish("beta-constant", _scale), swish_forward, swish_inputs,
        bug=f"dx's inner beta off by a factor {_scale:g} (a rounded constant)",
    )  # fmt: skip


# -- RMSNorm, epsilon outside the square root in the backward -------------------------------------------------------


def rms_forward_eps(eps: float) -> Any:
    def forward(x: Any, weight: Any) -> Any:
        return x / torch.sqrt((x**2).mean(-1, keepdim=True) + eps) * weight

    return forward


def rms_norm_eps_outside(eps: float) -> type[torch.autograd.Function]:
    forward_ops = rms_forward_eps(eps)

    class RMSNormEps(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any) -> Any:
            ctx.save_for_backward(x, weight)
            return forward_ops(x, weight)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            x, weight = ctx.saved_tensors
            ms = (x**2).mean(-1, keepdim=True)
            r = 1.0 / (torch.sqrt(ms) + eps)  # the bug: eps outside the root (the forward has sqrt(ms + eps))
            gw = g * weight
            dx = gw * r - x * r**3 * (gw * x).mean(-1, keepdim=True)
            return dx, (g * x * r).sum(0)

    return RMSNormEps


for _eps in (1e-2, 1e-4, 1e-6):
    function_case(
        f"rmsnorm/eps-outside-sqrt-{_eps:g}", "RMSNorm", rms_norm_eps_outside(_eps), rms_forward_eps(_eps),
        rms_norm_inputs, bug=f"backward divides by sqrt(mean(x^2)) + eps, the forward by sqrt(mean(x^2) + eps); "
        f"eps = {_eps:g}",
    )  # fmt: skip
