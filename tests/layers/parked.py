"""Correct models that stress a checker: units parked within h / 16 of a kink or a tie, ReLU units exactly at 0,
plain ReLU MLPs at batch 256 (float32: many kinks inside the step), and one with a single wrong weight element.

Parking sets a first-layer bias so that one sample's pre-activation sits ``offset x h`` from the kink (leaky ReLU)
or from its partner unit (maxout), h the checkers' default step for that bias, computed in the model's own dtype.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import pointwise
from .models import Custom, classification_batch, model_case, seeded
from .registry import DTYPES, step

#: Offsets of the parked units, in units of the step h (all within h / 16).
OFFSETS = (1 / 64, -1 / 32, 1 / 20, -1 / 17, 1 / 40, -1 / 128)


class Maxout(nn.Module):
    def forward(self, z: Any) -> Any:
        return z.reshape(z.shape[0], -1, 2).max(-1).values


def park(fc: nn.Linear, x: Any, pairs: bool) -> None:
    """Move biases so sample n's unit (or unit pair) n lands within h / 16 of its kink (or tie)."""
    with torch.no_grad():
        for n, offset in enumerate(OFFSETS):
            z = fc(x[n : n + 1])[0]
            unit = 2 * n + 1 if pairs else n
            h = step(str(fc.bias.dtype).replace("torch.", ""), float(fc.bias[unit]))
            anchor = z[unit - 1] if pairs else 0.0
            fc.bias[unit] += anchor - z[unit] + offset * h


def parked_mlp(kind: str, gain: float = 1.0, batch: int = 32) -> Callable[[str, int], tuple[nn.Module, Any, Any]]:
    """8 -> hidden (leaky ReLU 0.1 or maxout pairs) -> 8 tanh -> 4; ``gain`` scales every weight matrix (sharper
    curvature around the kinks)."""

    def make(dtype: str, seed: int) -> tuple[nn.Module, Any, Any]:
        seeded(seed, 50)
        hidden = 32 if kind == "maxout" else 16
        activation = Maxout() if kind == "maxout" else nn.LeakyReLU(0.1)
        width = hidden // 2 if kind == "maxout" else hidden
        model = nn.Sequential(nn.Linear(8, hidden), activation, nn.Linear(width, 8), nn.Tanh(), nn.Linear(8, 4))
        with torch.no_grad():
            for i in (0, 2, 4):
                model[i].weight *= gain
        model = model.to(DTYPES[dtype])
        x, y = classification_batch(seed, 51, batch, 8, 4, dtype)
        park(model[0], x, pairs=kind == "maxout")
        return model, F.cross_entropy, (x, y)

    return make


def relu_at_zero(dtype: str, seed: int) -> tuple[nn.Module, Any, Any]:
    seeded(seed, 52)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).to(DTYPES[dtype])
    x, y = classification_batch(seed, 53, 32, 8, 4, dtype)
    with torch.no_grad():
        x[0] = 0.0  # sample 0's pre-activations are the biases: those set to 0 sit exactly at the kink
        model[0].bias[:4] = 0.0
    return model, F.cross_entropy, (x, y)


model_case(
    "leaky-mlp/parked-at-kink", "leaky ReLU MLP, parked", parked_mlp("leaky"), tags=("kink",),
    notes="6 hidden units, each within h/16 of the leaky ReLU's kink for one sample (issue item 2)",
)  # fmt: skip
model_case(
    "leaky-mlp-gain3/parked-at-kink", "leaky ReLU MLP, parked", parked_mlp("leaky", gain=3.0, batch=8),
    tags=("kink",), notes="as leaky-mlp/parked-at-kink with every weight matrix 3x larger, batch 8",
)  # fmt: skip
model_case(
    "maxout-mlp/parked-at-tie", "maxout MLP, parked", parked_mlp("maxout"), tags=("kink",),
    notes="6 maxout pairs, each within h/16 of a tie for one sample (issue item 2)",
)  # fmt: skip
model_case(
    "relu-mlp/at-zero", "ReLU MLP at 0", relu_at_zero, tags=("kink",),
    notes="4 ReLU units exactly at 0 for one sample (zero input, zero bias)",
)  # fmt: skip


# -- ReLU MLPs at batch 256 -----------------------------------------------------------------------------------------


def relu_mlp(sizes: tuple[int, ...], custom_bug: str = "") -> Callable[[str, int], tuple[nn.Module, Any, Any]]:
    """A plain ReLU MLP with a cross-entropy over a batch of 256; ``custom_bug``: its second Linear is hand-written."""

    def make(dtype: str, seed: int) -> tuple[nn.Module, Any, Any]:
        seeded(seed, 54)
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            layer: nn.Module = nn.Linear(n_in, n_out)
            if custom_bug and i == 1:
                params = {"weight": layer.weight.detach().double(), "bias": layer.bias.detach().double()}
                layer = Custom(pointwise.linear(custom_bug), pointwise.linear_forward, params)
            layers += [layer, nn.ReLU()]
        model = nn.Sequential(*layers[:-1]).to(DTYPES[dtype])
        return model, F.cross_entropy, classification_batch(seed, 55, 256, sizes[0], sizes[-1], dtype)

    return make


MLP = "ReLU MLP, batch 256"
model_case(
    "mlp-relu-b256", MLP, relu_mlp((16, 32, 32, 10)), tags=("b256",),
    notes="16-32-32-10: many ReLU kinks inside the float32 step",
)  # fmt: skip
model_case(
    "mlp-relu-b256-bottleneck", MLP, relu_mlp((128, 4, 10)), tags=("b256",),
    notes="128-4-10: many suspects in the first layer's 512 weights at the first look (issue item 3)",
)  # fmt: skip
model_case(
    "mlp-relu-b256/last-element-skipped", MLP, relu_mlp((16, 32, 32, 10), "last-element-skipped"), tags=("b256",),
    bug="the middle layer's hand-written backward never writes dW[-1, -1] (one wrong element)",
)  # fmt: skip
