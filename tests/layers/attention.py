"""Softmax, log-softmax and scaled dot-product attention by hand; correct and with realistic bugs.

Bugs: the softmax backward's - y * sum(g y) term dropped; a temperature's 1/T forgotten (a missing scale whose
size |1 - 1/T| the temperature chooses); log-softmax's sum over the wrong axis or not summed at all; attention's
1/sqrt(d) forgotten in dq and dk, the attention matrix not transposed in dv.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .common import function_case
from .registry import generator, randn

# -- softmax over the last dimension, with a temperature -----------------------------------------------------------


def softmax_forward(x: Any, temperature: float = 1.0) -> Any:
    z = x / temperature
    e = torch.exp(z - z.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def softmax(bug: str = "", temperature: float = 1.0) -> type[torch.autograd.Function]:
    class Softmax(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            y = softmax_forward(x, temperature)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (y,) = ctx.saved_tensors
            dx = y * g if bug == "dropped-term" else y * (g - (g * y).sum(-1, keepdim=True))
            return dx if bug == "missing-temperature" else dx / temperature

    return Softmax


def logits(batch: int, classes: int, salt: int) -> Any:
    def inputs(dtype: str, seed: int) -> Any:
        return (randn((batch, classes), generator(seed, salt), dtype, scale=2.0),), ("x",)

    return inputs


SM = "softmax"
function_case("softmax", SM, softmax(), softmax_forward, logits(8, 16, 10))
function_case(
    "softmax/dropped-term", SM, softmax("dropped-term"), softmax_forward, logits(8, 16, 10),
    bug="dx = y g, the - y sum(g y) term dropped",
)  # fmt: skip
for _t in (0.5, 1.002, 1.00003):

    def _forward(x: Any, temperature: float = _t) -> Any:
        return softmax_forward(x, temperature)

    if _t == 0.5:
        function_case(f"softmax-t{_t:g}", SM, softmax(temperature=_t), _forward, logits(8, 16, 10))
    function_case(
        f"softmax-t{_t:g}/missing-scale", SM, softmax("missing-temperature", _t), _forward, logits(8, 16, 10),
        bug=f"softmax(x / T) with T = {_t:g}: the backward forgets the 1/T",
    )  # fmt: skip


# -- log-softmax ---------------------------------------------------------------------------------------------------


def log_softmax_forward(x: Any) -> Any:
    m = x.max(-1, keepdim=True).values
    return x - m - torch.log(torch.exp(x - m).sum(-1, keepdim=True))


def log_softmax(bug: str = "") -> type[torch.autograd.Function]:
    class LogSoftmax(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            y = log_softmax_forward(x)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (y,) = ctx.saved_tensors
            if bug == "not-summed":
                return g - torch.exp(y) * g
            total = g.sum(0, keepdim=True) if bug == "wrong-axis" else g.sum(-1, keepdim=True)
            return g - torch.exp(y) * total

    return LogSoftmax


LSM = "log-softmax"
function_case("log-softmax", LSM, log_softmax(), log_softmax_forward, logits(8, 8, 11))
function_case(
    "log-softmax/not-summed", LSM, log_softmax("not-summed"), log_softmax_forward, logits(8, 8, 11),
    bug="dx = g - softmax * g (the sum of g over classes forgotten)",
)  # fmt: skip
function_case(
    "log-softmax/wrong-axis", LSM, log_softmax("wrong-axis"), log_softmax_forward, logits(8, 8, 11),
    bug="g summed over the batch axis instead of the classes (square input: shapes agree)",
)  # fmt: skip


# -- single-head scaled dot-product attention ---------------------------------------------------------------------


def attention_forward(q: Any, k: Any, v: Any) -> Any:
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return softmax_forward(scores) @ v


def attention(bug: str = "") -> type[torch.autograd.Function]:
    class Attention(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, q: Any, k: Any, v: Any) -> Any:
            p = softmax_forward(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]))
            ctx.save_for_backward(q, k, v, p)
            return p @ v

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            q, k, v, p = ctx.saved_tensors
            scale = 1.0 if bug == "missing-scale" else 1.0 / math.sqrt(q.shape[-1])
            dv = p @ g if bug == "untransposed-p" else p.transpose(-2, -1) @ g
            dp = g @ v.transpose(-2, -1)
            ds = p * dp if bug == "dropped-softmax-term" else p * (dp - (dp * p).sum(-1, keepdim=True))
            return ds @ k * scale, ds.transpose(-2, -1) @ q * scale, dv

    return Attention


def qkv(dtype: str, seed: int) -> Any:
    gen = generator(seed, 12)
    return tuple(randn((8, 8), gen, dtype) for _ in range(3)), ("q", "k", "v")


ATT = "attention"
function_case("attention", ATT, attention(), attention_forward, qkv)
for _bug, _text in [
    ("missing-scale", "dq and dk forget the 1/sqrt(d) scale (d = 8)"),
    ("untransposed-p", "dv = P g instead of P^T g (square: shapes agree)"),
    ("dropped-softmax-term", "dS = P dP, the softmax's - P sum(dP P) term dropped"),
]:
    function_case(f"attention/{_bug}", ATT, attention(_bug), attention_forward, qkv, bug=_text)
