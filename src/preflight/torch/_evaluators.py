"""Ways to evaluate the loss of a module at many single-coordinate perturbations of one parameter tensor.

Each evaluator answers ``losses(name, coords, deltas) -> tensor of k losses`` where coordinate ``coords[r]`` (a flat
index into the tensor) is moved by ``deltas[r]``. Three strategies, fastest first:

- ``ChainEvaluator``: a plain ``nn.Sequential`` in a deterministic state whose parameters each sit in one place
  (no tied weights, no module registered twice: perturbing one layer's copy would miss the others). The input of
  every child is cached once; a perturbed Linear weight ``W[i, j] += d`` changes only column ``i`` of that layer's
  output, by ``d * u[:, j]`` (a rank-one update), elementwise activations keep it in that column, and the next
  Linear turns it into ``z + delta_i * W_next[:, i]``; only the rest of the network runs, batched over
  perturbations with vmap.
- ``VmapEvaluator``: the whole model through ``torch.func.functional_call``, batched over perturbations.
- ``LoopEvaluator``: one call per perturbation, the tensor perturbed in place in a working copy and restored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

__all__ = ["ELEMENTWISE", "ChainEvaluator", "LoopEvaluator", "VmapEvaluator"]

Loss = Callable[[Any], torch.Tensor]
#: Modules that act element by element, so a change confined to one feature column stays in it (these exact
#: types: a subclass may redefine forward).
ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Identity, nn.Hardtanh,
    nn.Mish, nn.CELU, nn.SELU, nn.ReLU6, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
)  # fmt: skip
#: Elements of the largest intermediate tensor a vmapped chunk may hold (float64: 8 bytes each).
CHUNK_ELEMENTS = 1 << 22


class LoopEvaluator:
    """One model call per perturbation (the fallback: works for any model)."""

    def __init__(self, call: Callable[[dict[str, torch.Tensor]], torch.Tensor], params: dict[str, torch.Tensor]):
        self.call = call
        self.params = params

    def losses(self, name: str, coords: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        work = self.params[name].clone()
        flat = work.view(-1)
        values = dict(self.params, **{name: work})
        out = torch.empty(len(coords), dtype=torch.float64)
        for r, (i, d) in enumerate(zip(coords.tolist(), deltas.tolist(), strict=True)):
            old = flat[i].clone()
            flat[i] = old + d
            try:
                out[r] = float(self.call(values))
            finally:
                flat[i] = old
        return out


class VmapEvaluator:
    """The whole model vmapped over a chunk of perturbed copies of one tensor."""

    def __init__(self, call: Callable[[dict[str, torch.Tensor]], torch.Tensor], params: dict[str, torch.Tensor]):
        self.call = call
        self.params = params

    def chunk(self, name: str) -> int:
        return max(1, min(1024, CHUNK_ELEMENTS // max(1, self.params[name].numel() * 8)))

    def losses(self, name: str, coords: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        base = self.params[name]
        batch = base.reshape(1, -1).repeat(len(coords), 1)
        batch.scatter_add_(1, coords.view(-1, 1), deltas.to(base.dtype).view(-1, 1))

        def one(p: torch.Tensor) -> torch.Tensor:
            return self.call(dict(self.params, **{name: p.view(base.shape)}))

        return vmap(one)(batch).to(torch.float64)


class ChainEvaluator:
    """Cached prefix and rank-one updates for an ``nn.Sequential`` (see the module docstring)."""

    def __init__(self, model: nn.Sequential, inputs: torch.Tensor, loss: Loss):
        # Sequential.forward runs every registered child, a repeated one (the same Tanh twice) included; children()
        # and named_children() list each module once.
        self.names = list(model._modules)
        self.children = [m for m in model._modules.values() if m is not None]
        self.loss = loss
        self.cache = [inputs]
        for child in self.children:
            self.cache.append(child(self.cache[-1]))

    @staticmethod
    def supports(model: nn.Module, inputs: tuple[Any, ...]) -> bool:
        """A plain Sequential (its own forward, one tensor input) with no dropout or buffers in training mode.

        Parameters used in more than one place are the caller's to rule out (see ``shared_parameters``).
        """
        plain = isinstance(model, nn.Sequential) and type(model).forward is nn.Sequential.forward
        if not plain or len(inputs) != 1 or not isinstance(inputs[0], torch.Tensor):
            return False
        if any(m is None for m in model._modules.values()):
            return False
        return all(not (m.training and (isinstance(m, nn.modules.dropout._DropoutNd) or any(True for _ in m.buffers())))
                   for m in model.modules())  # fmt: skip

    def chunk(self, name: str) -> int:
        widest = max(t.numel() for t in self.cache)
        return max(1, min(4096, CHUNK_ELEMENTS // widest))

    def _suffix(self, start: int, batch: torch.Tensor) -> torch.Tensor:
        def rest(x: torch.Tensor) -> torch.Tensor:
            for child in self.children[start:]:
                x = child(x)
            return self.loss(x)

        return vmap(rest)(batch)

    def losses(self, name: str, coords: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        child_name, pname = name.split(".", 1)
        c = self.names.index(child_name)
        child = self.children[c]
        u, z = self.cache[c], self.cache[c + 1]
        deltas = deltas.to(z.dtype)
        if _plain_linear(child) and pname in ("weight", "bias"):
            return self._linear(c, pname, u, z, coords, deltas)
        base = dict(child.named_parameters())[pname]
        batch = base.reshape(1, -1).repeat(len(coords), 1)
        batch.scatter_add_(1, coords.view(-1, 1), deltas.view(-1, 1))

        def one(p: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = functional_call(child, {pname: p.view(base.shape)}, (u,))
            return out

        return self._suffix(c + 1, vmap(one)(batch)).to(torch.float64)

    def _linear(
        self, c: int, pname: str, u: torch.Tensor, z: torch.Tensor, coords: torch.Tensor, deltas: torch.Tensor
    ) -> torch.Tensor:
        # index_select, not advanced indexing: the latter is an order of magnitude slower on CPU here.
        n_in, k = u.shape[-1], len(coords)
        rows = coords // n_in if pname == "weight" else coords
        shape = (k,) + (1,) * (z.dim() - 1)
        before = z.index_select(-1, rows).movedim(-1, 0)
        if pname == "weight":
            column = before + deltas.view(shape) * u.index_select(-1, coords % n_in).movedim(-1, 0)
        else:
            column = before + deltas.view(shape)
        nxt = c + 1
        while nxt < len(self.children) and type(self.children[nxt]) in ELEMENTWISE:
            column = self.children[nxt](column)
            before = self.cache[nxt + 1].index_select(-1, rows).movedim(-1, 0)
            nxt += 1
        if nxt < len(self.children) and _plain_linear(self.children[nxt]):
            weight = _weight(self.children[nxt])
            row = weight.index_select(1, rows).T.contiguous().reshape((k,) + (1,) * (z.dim() - 1) + (-1,))
            moved = (column - before).contiguous().unsqueeze(-1)
            return self._suffix(nxt + 1, torch.addcmul(self.cache[nxt + 1], moved, row).contiguous()).double()
        batch = self.cache[nxt].unsqueeze(0).repeat((k,) + (1,) * z.dim())
        where = rows.view((*shape, 1)).expand((*column.shape, 1))
        batch.scatter_(-1, where, column.contiguous().unsqueeze(-1))
        return self._suffix(nxt, batch).double()


def _plain_linear(module: nn.Module) -> bool:
    """An nn.Linear computing ``x W^T + b`` (a subclass with a forward of its own, masked or low-rank, may not)."""
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


def _weight(layer: nn.Module) -> torch.Tensor:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return weight.detach()
