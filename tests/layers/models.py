"""Whole ``nn.Module`` models for ``check_module``: hand-written layers inside MLPs, and correct models parked at
kinks and ties, and plain float32 ReLU MLPs at batch 256.

Each model's reference twin has the same parameter names and values and runs the plain-ops forward of its custom
layers (autograd through it is the truth).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import attention, conv, norms, pointwise
from .registry import DTYPES, Case, ModuleCall, generator, register


class Custom(nn.Module):
    """A hand-written Function with its own parameters; ``reference`` runs its plain-ops forward instead."""

    def __init__(
        self, function: type[torch.autograd.Function], forward: Callable[..., Any], params: dict[str, Any]
    ) -> None:
        super().__init__()
        self.function, self.forward_ops, self.reference = function, forward, False
        for name, value in params.items():
            self.register_parameter(name, nn.Parameter(value))

    def forward(self, *x: Any) -> Any:
        params = list(self.parameters(recurse=False))
        return (self.forward_ops if self.reference else self.function.apply)(*x, *params)


def twin(model: nn.Module) -> nn.Module:
    """The reference twin: a deep copy whose custom layers run their plain-ops forward."""
    reference = copy.deepcopy(model)
    for m in reference.modules():
        if isinstance(m, Custom):
            m.reference = True
    return reference


def model_case(
    name: str, layer: str, make: Callable[[str, int], tuple[nn.Module, Any, Any]], *, bug: str = "",
    dtypes: tuple[str, ...] = ("float64", "float32"), notes: str = "", tags: tuple[str, ...] = (),
) -> Case:  # fmt: skip
    """``make(dtype, seed) -> (model, loss_fn, batch)``, the model already in ``dtype``."""

    def build(dtype: str, seed: int) -> ModuleCall:
        model, loss_fn, batch = make(dtype, seed)
        return ModuleCall(model, loss_fn, batch, twin(model))

    expect = "fail" if bug else "pass"
    return register(Case(name, "module", layer, build, expect, bug=bug, dtypes=dtypes, notes=notes, tags=tags))


def seeded(seed: int, salt: int) -> None:
    torch.manual_seed(1000 * seed + salt)


def classification_batch(seed: int, salt: int, m: int, n_in: int, classes: int, dtype: str) -> tuple[Any, Any]:
    gen = generator(seed, salt)
    x = torch.randn(m, n_in, generator=gen, dtype=torch.float64).to(DTYPES[dtype])
    return x, torch.randint(0, classes, (m,), generator=gen)


# -- normalization, GELU and attention inside small MLPs -------------------------------------------------------


class NormMLP(nn.Module):
    def __init__(self, n_in: int, width: int, classes: int, norm: nn.Module, activation: Callable[[Any], Any]):
        super().__init__()
        self.fc1, self.norm, self.fc2 = nn.Linear(n_in, width), norm, nn.Linear(width, classes)
        self.activation = activation

    def forward(self, x: Any) -> Any:
        return self.fc2(self.activation(self.norm(self.fc1(x))))


def norm_params(width: int, seed: int, salt: int) -> dict[str, Any]:
    gen = generator(seed, salt)
    return {
        "gamma": 1.0 + 0.2 * torch.randn(width, generator=gen, dtype=torch.float64),
        "beta": 0.1 * torch.randn(width, generator=gen, dtype=torch.float64),
    }


def batch_norm_mlp(bug: str) -> Callable[[str, int], tuple[nn.Module, Any, Any]]:
    def make(dtype: str, seed: int) -> tuple[nn.Module, Any, Any]:
        seeded(seed, 40)
        norm = Custom(norms.batch_norm(bug), norms.batch_norm_forward, norm_params(16, seed, 41))
        model = NormMLP(8, 16, 4, norm, torch.tanh).to(DTYPES[dtype])
        return model, F.cross_entropy, classification_batch(seed, 42, 64, 8, 4, dtype)

    return make


def layer_norm_mlp(ln_bug: str = "", gelu_bug: str = "", pdf: float = pointwise.INV_SQRT_2PI) -> Any:
    def make(dtype: str, seed: int) -> tuple[nn.Module, Any, Any]:
        seeded(seed, 43)
        norm = Custom(norms.layer_norm(ln_bug), norms.layer_norm_forward, norm_params(16, seed, 44))
        gelu = Custom(pointwise.gelu(gelu_bug, pdf), pointwise.gelu_forward, {})
        model = NormMLP(8, 16, 4, norm, gelu).to(DTYPES[dtype])
        return model, F.cross_entropy, classification_batch(seed, 45, 32, 8, 4, dtype)

    return make


BN, LN = "BatchNorm MLP (batch 64)", "LayerNorm + GELU MLP (batch 32)"
model_case("bn-mlp", BN, batch_norm_mlp(""))
model_case(
    "bn-mlp/backward-unbiased", BN, batch_norm_mlp("backward-unbiased"),
    bug="BatchNorm backward with the unbiased variance inside a tanh MLP (issue item 1)",
)  # fmt: skip
model_case("ln-gelu-mlp", LN, layer_norm_mlp())
model_case(
    "ln-gelu-mlp/ln-unbiased-variance", LN, layer_norm_mlp(ln_bug="unbiased-variance"),
    bug="LayerNorm backward recomputes the variance with N - 1 (width 16)",
)  # fmt: skip
model_case(
    "ln-gelu-mlp/gelu-pdf-constant-0.4", LN, layer_norm_mlp(gelu_bug="constant", pdf=0.4),
    bug="GELU's 1/sqrt(2 pi) written 0.4",
)  # fmt: skip
model_case(
    "ln-gelu-mlp/gelu-pdf-constant-0.3989", LN, layer_norm_mlp(gelu_bug="constant", pdf=0.3989),
    bug="GELU's 1/sqrt(2 pi) written 0.3989",
)  # fmt: skip


class AttentionBlock(nn.Module):
    def __init__(self, d: int, attention_layer: nn.Module) -> None:
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.attention = attention_layer

    def forward(self, x: Any) -> Any:
        return self.out(self.attention(self.q(x), self.k(x), self.v(x)))


def attention_block(bug: str) -> Callable[[str, int], tuple[nn.Module, Any, Any]]:
    def make(dtype: str, seed: int) -> tuple[nn.Module, Any, Any]:
        seeded(seed, 46)
        layer = Custom(attention.attention(bug), attention.attention_forward, {})
        model = AttentionBlock(8, layer).to(DTYPES[dtype])
        gen = generator(seed, 47)
        x = torch.randn(8, 8, generator=gen, dtype=torch.float64).to(DTYPES[dtype])
        target = torch.randn(8, 8, generator=gen, dtype=torch.float64).to(DTYPES[dtype])
        return model, F.mse_loss, (x, target)

    return make


AB = "attention block (q, k, v, out projections)"
model_case("attention-block", AB, attention_block(""))
model_case(
    "attention-block/missing-scale", AB, attention_block("missing-scale"),
    bug="the attention backward forgets 1/sqrt(d) in dq and dk",
)  # fmt: skip


class ConvNet(nn.Module):
    def __init__(self, conv1: nn.Module, conv2: nn.Module) -> None:
        super().__init__()
        self.conv1, self.conv2, self.head = conv1, conv2, nn.Linear(3, 3)

    def forward(self, x: Any) -> Any:
        return self.head(self.conv2(torch.tanh(self.conv1(x))).mean((2, 3)))


def conv_net(bug: str) -> Callable[[str, int], tuple[nn.Module, Any, Any]]:
    def make(dtype: str, seed: int) -> tuple[nn.Module, Any, Any]:
        seeded(seed, 48)
        gen = generator(seed, 49)

        def weight() -> Any:
            return torch.randn(3, 3, 3, 3, generator=gen, dtype=torch.float64) / math.sqrt(27)

        conv1 = Custom(conv.conv(), conv.conv_forward, {"weight": weight()})
        conv2 = Custom(conv.conv(bug), conv.conv_forward, {"weight": weight()})
        model = ConvNet(conv1, conv2).to(DTYPES[dtype])
        x = torch.randn(4, 3, 6, 6, generator=gen, dtype=torch.float64).to(DTYPES[dtype])
        return model, F.cross_entropy, (x, torch.randint(0, 3, (4,), generator=gen))

    return make


CN = "conv net (two unfold convs, padding 1)"
model_case("conv-net", CN, conv_net(""))
model_case(
    "conv-net/loop-bound", CN, conv_net("loop-bound"), tags=("edge",),
    bug="the second conv's col2im loop bound off by one: only edge elements of its dx wrong (seen in conv1.weight)",
)  # fmt: skip
