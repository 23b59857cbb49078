"""The graph strategy of check_module: structured updates per layer type, the same perturbed losses as the loop,
planted bugs caught, and a fallback for what it does not understand."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from preflight.torch import check_module
from preflight.torch.check import _ModuleCheck
from preflight.torch.layer_updates import moved_outputs

torch.manual_seed(0)
D = torch.float64
#: Two ways of computing one loss differ by rounding only: a few ulps of the loss (about 1) and of its terms.
ROUNDING = 1e-12


def _settled(norm: nn.Module) -> nn.Module:
    with torch.no_grad():
        for name in ("running_mean", "running_var", "weight", "bias"):
            t = getattr(norm, name)
            t.copy_(torch.rand(t.shape) + 0.5 if name in ("running_var", "weight") else torch.randn(t.shape) * 0.3)
    return norm.eval()


#: (layer, input) pairs covering the structured updates, with their options.
LAYERS: dict[str, Callable[[], tuple[nn.Module, torch.Tensor]]] = {
    "linear": lambda: (nn.Linear(5, 4), torch.randn(3, 2, 5)),
    "linear-1d": lambda: (nn.Linear(5, 4), torch.randn(5)),
    "conv2d": lambda: (nn.Conv2d(3, 4, 3, padding=1), torch.randn(2, 3, 6, 5)),
    "conv2d-strided-dilated": lambda: (
        nn.Conv2d(4, 6, (3, 2), stride=(2, 1), dilation=(1, 2), groups=2), torch.randn(2, 4, 8, 7)
    ),
    "conv2d-same-even": lambda: (nn.Conv2d(2, 3, 4, padding="same", bias=False), torch.randn(2, 2, 6, 6)),
    "conv2d-unbatched": lambda: (nn.Conv2d(2, 3, 3, stride=2), torch.randn(2, 7, 7)),
    "conv1d": lambda: (nn.Conv1d(4, 6, 3, padding=2, dilation=2, groups=2), torch.randn(2, 4, 9)),
    "conv1d-valid": lambda: (nn.Conv1d(3, 2, 4, stride=3, padding="valid"), torch.randn(3, 3, 13)),
    "embedding": lambda: (nn.Embedding(7, 3, padding_idx=0), torch.randint(0, 7, (2, 5))),
    "layernorm": lambda: (nn.LayerNorm(4), torch.randn(3, 2, 4)),
    "layernorm-2d": lambda: (nn.LayerNorm((3, 4)), torch.randn(2, 3, 4)),
    "batchnorm1d": lambda: (_settled(nn.BatchNorm1d(4)), torch.randn(5, 4)),
    "batchnorm1d-seq": lambda: (_settled(nn.BatchNorm1d(3)), torch.randn(2, 3, 6)),
    "batchnorm2d": lambda: (_settled(nn.BatchNorm2d(3)), torch.randn(2, 3, 4, 4)),
}  # fmt: skip


# torch warns that an even kernel with padding="same" pads a copy of the input: the layer chosen on purpose.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_each_structured_update_equals_running_the_layer_on_every_coordinate(kind: str) -> None:
    layer, u = LAYERS[kind]()
    layer = layer.double()
    u = u.double() if u.is_floating_point() else u
    z = layer(u).detach()
    for pname, p in layer.named_parameters():
        coords = torch.arange(p.numel())
        deltas = torch.linspace(-0.5, 0.7, p.numel(), dtype=D)
        with torch.no_grad():
            moved = moved_outputs(layer, pname, (u,), z, coords, deltas)
            batch = p.detach().reshape(1, -1).repeat(p.numel(), 1)
            batch[coords, coords] += deltas
            direct = vmap(lambda q, name=pname, shape=p.shape: functional_call(layer, {name: q.view(shape)}, (u,)))(
                batch
            )
        assert moved is not None, f"{kind}.{pname}: no structured update"
        assert moved.shape == direct.shape
        torch.testing.assert_close(moved, direct, rtol=ROUNDING, atol=ROUNDING)


def test_a_layer_outside_the_structured_set_returns_none() -> None:
    conv = nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular").double()
    u = torch.randn(1, 2, 4, 4, dtype=D)
    assert moved_outputs(conv, "weight", (u,), conv(u), torch.tensor([0]), torch.tensor([0.1], dtype=D)) is None
    train = nn.BatchNorm1d(2).double().train()
    x = torch.randn(4, 2, dtype=D)
    assert moved_outputs(train, "weight", (x,), train(x), torch.tensor([0]), torch.tensor([0.1], dtype=D)) is None


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv, self.norm = nn.Conv2d(width, width, 3, padding=1), _settled(nn.BatchNorm2d(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.norm(self.conv(x)))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.block = nn.Conv2d(2, 4, 3, padding=1), Residual(4)
        self.squeeze = nn.Conv1d(4, 3, 3, padding="same")
        self.head = nn.Linear(3 * 9, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(F.avg_pool2d(F.gelu(self.stem(x)), 2))
        return self.head(self.squeeze(h.flatten(2)).flatten(1))


class TinyTransformer(nn.Module):
    """Embedding, LayerNorm, attention written with Linear projections, nn.MultiheadAttention, a residual MLP, and
    a parameter read directly in forward."""

    def __init__(self, vocabulary: int = 9, width: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.embed, self.norm, self.heads = nn.Embedding(vocabulary, width), nn.LayerNorm(width), heads
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
        self.mha = nn.MultiheadAttention(width, heads, batch_first=True)
        self.up, self.down, self.head = nn.Linear(width, 12), nn.Linear(12, width), nn.Linear(width, 3)
        self.gate = nn.Parameter(torch.rand(width) + 0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(tokens))
        b, t, d = x.shape
        q, k, v = (f(x).view(b, t, self.heads, -1).transpose(1, 2) for f in (self.q, self.k, self.v))
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, dim=-1) @ v
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        x = x + self.mha(x, x, x, need_weights=False)[0]
        x = x + self.down(torch.tanh(self.up(x))) * self.gate
        return self.head(x.mean(dim=1))


class Twice(nn.Module):
    """One Linear called twice: its tensors reach the loss through two nodes (the whole model is vmapped for them)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.head = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


MODELS: dict[str, Callable[[], tuple[nn.Module, Any]]] = {
    "cnn": lambda: (SmallCNN(), (torch.randn(3, 2, 6, 6, dtype=D), torch.tensor([0, 1, 2]))),
    "transformer": lambda: (TinyTransformer(), (torch.randint(0, 9, (2, 5)), torch.tensor([0, 2]))),
    "twice": lambda: (Twice(), (torch.randn(5, 4, dtype=D), torch.tensor([0, 1, 2, 1, 0]))),
}


def _losses(model: nn.Module, batch: Any, strategy: str) -> tuple[str, dict[str, torch.Tensor]]:
    (x, y) = batch
    job = _ModuleCheck(model, F.cross_entropy, (x,), (y,), None)
    evaluator = job.evaluator(strategy)
    out = {}
    with torch.no_grad():
        for name in job.checked:
            size = job.leaves[name].size
            coords = torch.arange(size)
            out[name] = torch.from_numpy(evaluator.losses(name, coords, torch.full((size,), 1e-3, dtype=D)))
    return job.strategy, out


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_the_graph_strategy_gives_the_loops_perturbed_losses(kind: str) -> None:
    model, batch = MODELS[kind]()
    model = model.double().eval()
    used, graph = _losses(model, batch, "graph")
    _, loop = _losses(model, batch, "loop")
    assert used == "graph"
    for name in loop:
        torch.testing.assert_close(graph[name], loop[name], rtol=ROUNDING, atol=ROUNDING, msg=name)


def test_auto_takes_the_graph_for_a_model_that_is_not_a_sequential() -> None:
    model, batch = MODELS["cnn"]()
    report = check_module(model.double(), F.cross_entropy, batch, mode="eval")
    assert report.passed, report
    assert report.notes[0].startswith("strategy: graph")


class _BadScale(torch.autograd.Function):
    """``x * s`` whose backward returns 1.1 times the true gradient of ``s`` (a planted bug)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, s = ctx.saved_tensors
        reduce = tuple(i for i in range(grad.dim()) if i != 1)
        return grad * s, 1.1 * (grad * x).sum(dim=reduce).view(s.shape)


class BadChannelScale(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.rand(channels, 1, 1) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BadScale.apply(x, self.scale)  # type: ignore[no-any-return]


def test_a_planted_bug_in_a_custom_module_is_named_by_the_graph_strategy() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 3), BadChannelScale(3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 16, 2))
    model = model.double()
    batch = (torch.randn(4, 2, 6, 6, dtype=D), torch.tensor([0, 1, 1, 0]))
    report = check_module(model, F.cross_entropy, batch, strategy="graph")
    assert not report.passed
    assert report.worst == "1.scale"
    assert [n for n, r in report.parameters.items() if not r.passed] == ["1.scale"]


class Branchy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return self.b(torch.tanh(h) if h.sum() > 0 else torch.sigmoid(h))


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        h.tanh_()
        return self.b(h)


@pytest.mark.parametrize(("model", "why"), [(Branchy, "could not trace"), (InPlace, "in-place")])
def test_a_model_the_graph_does_not_understand_falls_back_saying_why(model: type[nn.Module], why: str) -> None:
    batch = (torch.randn(4, 3, dtype=D), torch.tensor([0, 1, 1, 0]))
    report = check_module(model().double(), F.cross_entropy, batch)
    assert report.passed
    # vmap where it works (the in-place model), the loop where vmap too fails (data-dependent control flow)
    assert report.notes[0].startswith(("strategy: vmap", "strategy: loop")), report.notes[0]
    assert f"not graph: {'torch.fx' if why == 'could not trace' else 'an'}" in report.notes[0]
    assert why in report.notes[0]
    with pytest.raises(ValueError, match=r"strategy: 'graph' does not apply"):
        check_module(model().double(), F.cross_entropy, batch, strategy="graph")
