"""Normalization layers by hand: LayerNorm, BatchNorm (training mode), RMSNorm; correct and with realistic bugs.

Bugs: the variance recomputed unbiased (N - 1) in the backward, or unbiased in the forward with the biased
backward; the projection term dropped; gamma forgotten; eps dropped in the backward (a wrong constant whose size
is about eps / (2 var), so the eps chooses it); a sum where a mean belongs.
"""

from __future__ import annotations

from typing import Any

import torch

from .common import function_case
from .registry import generator, randn

EPS = 1e-5


# -- LayerNorm over the last dimension --------------------------------------------------------------------------


def layer_norm_forward(x: Any, gamma: Any, beta: Any, eps: float = EPS) -> Any:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * gamma + beta


def layer_norm(bug: str = "", eps: float = EPS) -> type[torch.autograd.Function]:
    class LayerNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, gamma: Any, beta: Any) -> Any:
            ctx.save_for_backward(x, gamma)
            return layer_norm_forward(x, gamma, beta, eps)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            x, gamma = ctx.saved_tensors
            centred = x - x.mean(-1, keepdim=True)
            if bug == "unbiased-variance":
                var = x.var(-1, keepdim=True, unbiased=True)
            else:
                var = (centred**2).mean(-1, keepdim=True)
            rstd = 1.0 / torch.sqrt(var if bug == "eps-dropped" else var + eps)
            xhat = centred * rstd
            gx = g if bug == "missing-gamma" else g * gamma
            dx = gx - gx.mean(-1, keepdim=True)
            if bug != "dropped-term":
                dx = dx - xhat * (gx * xhat).mean(-1, keepdim=True)
            return dx * rstd, (g * xhat).sum(0), g.sum(0)

    return LayerNorm


def layer_norm_inputs(batch: int, width: int) -> Any:
    def inputs(dtype: str, seed: int) -> Any:
        gen = generator(seed, 1)
        x = randn((batch, width), gen, dtype, scale=2.0, shift=0.5)
        gamma = randn((width,), gen, dtype, scale=0.1, shift=1.0)
        beta = randn((width,), gen, dtype, scale=0.1)
        return (x, gamma, beta), ("x", "gamma", "beta")

    return inputs


LN = "LayerNorm"
function_case("layernorm", LN, layer_norm(), layer_norm_forward, layer_norm_inputs(8, 32))
for _bug, _text in [
    ("unbiased-variance", "backward recomputes the variance with N - 1"),
    ("missing-gamma", "dx forgets the gamma factor (gamma = 1 + 0.1 N(0, 1))"),
    ("dropped-term", "dx drops the - xhat * mean(g xhat) projection term"),
]:
    function_case(f"layernorm/{_bug}", LN, layer_norm(_bug), layer_norm_forward, layer_norm_inputs(8, 32), bug=_text)
function_case("layernorm-wide", LN, layer_norm(), layer_norm_forward, layer_norm_inputs(2, 256), tags=("wide",))
function_case(
    "layernorm-wide/unbiased-variance", LN, layer_norm("unbiased-variance"), layer_norm_forward,
    layer_norm_inputs(2, 256), bug="backward recomputes the variance with N - 1 (width 256: issue item 1)",
    tags=("wide",),
)  # fmt: skip
for _eps in (1e-3, 1e-5):

    def _forward(x: Any, gamma: Any, beta: Any, eps: float = _eps) -> Any:
        return layer_norm_forward(x, gamma, beta, eps)

    function_case(
        f"layernorm/eps-dropped-{_eps:g}", LN, layer_norm("eps-dropped", _eps), _forward, layer_norm_inputs(8, 32),
        bug=f"backward drops eps = {_eps:g} from sqrt(var + eps) (a wrong constant)",
    )  # fmt: skip


# -- BatchNorm, training mode (batch statistics) over the batch dimension --------------------------------------------


def batch_norm_forward(x: Any, gamma: Any, beta: Any, unbiased: bool = False) -> Any:
    mu = x.mean(0)
    var = ((x - mu) ** 2).sum(0) / (x.shape[0] - 1 if unbiased else x.shape[0])
    return (x - mu) / torch.sqrt(var + EPS) * gamma + beta


def batch_norm_unbiased_forward(x: Any, gamma: Any, beta: Any) -> Any:
    return batch_norm_forward(x, gamma, beta, unbiased=True)


def batch_norm(bug: str = "") -> type[torch.autograd.Function]:
    class BatchNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, gamma: Any, beta: Any) -> Any:
            ctx.save_for_backward(x, gamma)
            return batch_norm_forward(x, gamma, beta, unbiased=bug == "forward-unbiased")

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            x, gamma = ctx.saved_tensors
            n = x.shape[0]
            centred = x - x.mean(0)
            # "forward-unbiased": the forward normalized with the N - 1 variance, the backward is the textbook one
            # (means over N) applied to the saved statistics.
            var = (centred**2).sum(0) / (n - 1 if bug in ("backward-unbiased", "forward-unbiased") else n)
            rstd = 1.0 / torch.sqrt(var + EPS)
            xhat = centred * rstd
            gx = g * gamma
            dx = gx - xhat * (gx * xhat).mean(0)
            if bug != "dropped-mean-term":
                dx = dx - gx.mean(0)
            return dx * rstd, (g * xhat).sum(0), g.sum(0)

    return BatchNorm


def batch_norm_inputs(batch: int, channels: int) -> Any:
    def inputs(dtype: str, seed: int) -> Any:
        gen = generator(seed, 2)
        x = randn((batch, channels), gen, dtype, scale=1.5, shift=-0.3)
        gamma = randn((channels,), gen, dtype, scale=0.2, shift=1.0)
        beta = randn((channels,), gen, dtype, scale=0.1)
        return (x, gamma, beta), ("x", "gamma", "beta")

    return inputs


BN = "BatchNorm (train)"
for _batch, _channels, _suffix in [(64, 8, ""), (8, 4, "-batch8")]:
    _inputs = batch_norm_inputs(_batch, _channels)
    function_case(f"batchnorm{_suffix}", BN, batch_norm(), batch_norm_forward, _inputs)
    function_case(
        f"batchnorm{_suffix}/backward-unbiased", BN, batch_norm("backward-unbiased"), batch_norm_forward, _inputs,
        bug=f"backward uses the unbiased (N - 1) variance, forward the biased one (batch {_batch})",
    )  # fmt: skip
function_case(
    "batchnorm/forward-unbiased", BN, batch_norm("forward-unbiased"), batch_norm_unbiased_forward,
    batch_norm_inputs(64, 8), bug="forward normalizes with the unbiased variance, backward is the biased textbook one",
)  # fmt: skip
function_case(
    "batchnorm/dropped-mean-term", BN, batch_norm("dropped-mean-term"), batch_norm_forward, batch_norm_inputs(64, 8),
    bug="dx drops the - mean(g gamma) term",
)  # fmt: skip


# -- RMSNorm ------------------------------------------------------------------------------------------------------


def rms_norm_forward(x: Any, weight: Any, eps: float = EPS) -> Any:
    return x / torch.sqrt((x**2).mean(-1, keepdim=True) + eps) * weight


def rms_norm(bug: str = "", eps: float = EPS) -> type[torch.autograd.Function]:
    class RMSNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any) -> Any:
            ctx.save_for_backward(x, weight)
            return rms_norm_forward(x, weight, eps)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            x, weight = ctx.saved_tensors
            ms = (x**2).mean(-1, keepdim=True)
            r = 1.0 / torch.sqrt(ms if bug == "eps-dropped" else ms + eps)
            gw = g * weight
            dx = gw * r
            if bug != "dropped-term":
                project = (gw * x).sum(-1, keepdim=True) if bug == "sum-for-mean" else (gw * x).mean(-1, keepdim=True)
                dx = dx - x * r**3 * project
            return dx, (g * x * r).sum(0)

    return RMSNorm


def rms_norm_inputs(dtype: str, seed: int) -> Any:
    gen = generator(seed, 3)
    x = randn((8, 32), gen, dtype)
    weight = randn((32,), gen, dtype, scale=0.2, shift=1.0)
    return (x, weight), ("x", "weight")


RMS = "RMSNorm"
function_case("rmsnorm", RMS, rms_norm(), rms_norm_forward, rms_norm_inputs)
function_case(
    "rmsnorm/dropped-term", RMS, rms_norm("dropped-term"), rms_norm_forward, rms_norm_inputs,
    bug="dx treats the rms as a constant (drops - x r^3 mean(g w x))",
)  # fmt: skip
function_case(
    "rmsnorm/sum-for-mean", RMS, rms_norm("sum-for-mean"), rms_norm_forward, rms_norm_inputs,
    bug="dx sums g w x where the mean belongs",
)  # fmt: skip
for _eps in (1e-4, 2e-6, 2e-7):

    def _rms_forward(x: Any, weight: Any, eps: float = _eps) -> Any:
        return rms_norm_forward(x, weight, eps)

    function_case(
        f"rmsnorm/eps-dropped-{_eps:g}", RMS, rms_norm("eps-dropped", _eps), _rms_forward, rms_norm_inputs,
        bug=f"backward drops eps = {_eps:g} from sqrt(mean(x^2) + eps) (a wrong constant)",
    )  # fmt: skip
