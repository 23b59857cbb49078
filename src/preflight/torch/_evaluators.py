"""Ways to evaluate the loss of a module at many single-coordinate perturbations of one parameter tensor.

Each evaluator answers ``losses(name, coords, deltas) -> tensor of k losses`` where coordinate ``coords[r]`` (a flat
index into the tensor) is moved by ``deltas[r]``. Three strategies, fastest first:

- ``ChainEvaluator``: a plain ``nn.Sequential`` in a deterministic state whose parameters each sit in one place
  (no tied weights, no module registered twice: perturbing one layer's copy would miss the others). The input of
  every child is cached once; a perturbed Linear weight ``W[i, j] += d`` changes only column ``i`` of that layer's
  output, by ``d * u[:, j]`` (a rank-one update), elementwise activations keep it in that column, and the next
  Linear turns it into ``z + delta_i * W_next[:, i]``; only the rest of the network runs, batched over
  perturbations with vmap. When a Tanh and another Linear follow, the change goes through them too, by the Taylor
  series of tanh at the cached activations (as long as its remainder bound stays far below the rounding of the
  outputs it lands in; else the exact path), and when the last Linear feeds the mean cross-entropy of class
  indices, the loss's change takes a closed form: the cost per perturbation no longer holds a ``(batch, hidden)``
  tanh. Checked against plain forward calls to within an ulp or two of the loss (tests/test_torch_chain.py).
- ``VmapEvaluator``: the whole model through ``torch.func.functional_call``, batched over perturbations.
- ``LoopEvaluator``: one call per perturbation, the tensor perturbed in place in a working copy and restored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

__all__ = ["ELEMENTWISE", "ChainEvaluator", "LoopEvaluator", "VmapEvaluator", "class_targets"]

Loss = Callable[[Any], torch.Tensor]
#: Modules that act element by element, so a change confined to one feature column stays in it (these exact
#: types: a subclass may redefine forward).
ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Identity, nn.Hardtanh,
    nn.Mish, nn.CELU, nn.SELU, nn.ReLU6, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid,
)  # fmt: skip
#: Elements of the largest intermediate tensor a vmapped chunk may hold (float64: 8 bytes each).
CHUNK_ELEMENTS = 1 << 22
#: Taylor order of the Tanh between two Linear layers (``ChainEvaluator._through_tanh``). tanh is analytic within 1
#: of the real axis, where ``|tanh| <= tan(1)``; by Cauchy's estimate every Taylor coefficient about a real point is
#: at most tan(1), so the terms past order ``TANH_ORDER`` of a move of size ``r < 1`` sum to at most
#: ``tan(1) r^(TANH_ORDER + 1) / (1 - r)``.
TANH_ORDER = 4
#: The truncation allowed in the next layer's outputs, as a share of their largest magnitude, in units of the
#: dtype's machine epsilon: 2^-12 eps (2^-64 in float64), 1/2048 of the half-ulp rounding the plain forward makes on
#: that number anyway. A move past it takes the exact path.
TRUNCATION_SHARE = 2.0**-12


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

    def __init__(self, model: nn.Sequential, inputs: torch.Tensor, loss: Loss, target: torch.Tensor | None = None):
        """``target``: the class indices when ``loss`` is the mean cross-entropy of the output against them (see
        :func:`class_targets`); the last layer's moves then take a closed form instead of the vmapped loss."""
        # Sequential.forward runs every registered child, a repeated one (the same Tanh twice) included; children()
        # and named_children() list each module once.
        self.names = list(model._modules)
        self.children = [m for m in model._modules.values() if m is not None]
        self.loss = loss
        self.cache = [inputs]
        self._taylor: dict[int, tuple[torch.Tensor, float, float] | None] = {}
        for child in self.children:
            self.cache.append(child(self.cache[-1]))
        logits, self.target = self.cache[-1], target
        self.softmax: torch.Tensor | None = None
        self.base_loss: torch.Tensor | None = None
        if target is not None and logits.dim() == 2 and logits.shape[0] == len(target):
            self.softmax = torch.softmax(logits, -1).T.contiguous()  # (class, row), as the changes come
            self.base_loss = torch.nn.functional.cross_entropy(logits, target)
        else:
            self.target = None

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

    def _taylor_terms(self, nxt: int) -> tuple[torch.Tensor, float, float] | None:
        """For Linear ``nxt``, Tanh, Linear ``nxt + 2``: ``H[p, m, (l, o)] = c_p[l, m] V[o, m]`` with ``c_p`` the
        p-th Taylor coefficient of tanh at the cached ``tanh`` output ``t[l, m]`` (``l`` over the flattened leading
        dimensions) and ``V`` the last weight; then ``max_o ||V[o]||_1`` and the largest output magnitude. Cached.
        """
        if nxt not in self._taylor:
            t, z, v = self.cache[nxt + 2], self.cache[nxt + 3], _weight(self.children[nxt + 2])
            t = t.reshape(-1, t.shape[-1])
            s = 1 - t * t
            # tanh(x + d) = t + s d - t s d^2 + s (3t^2 - 1)/3 d^3 + t s (2 - 3t^2)/3 d^4 + ...
            coefficients = torch.stack([s, -t * s, s * (3 * t * t - 1) / 3, t * s * (2 - 3 * t * t) / 3])
            # (p, m, o, l): the products below come out as (unit, output, row), rows innermost (long, contiguous).
            h = (coefficients.transpose(1, 2).unsqueeze(2) * v.T.unsqueeze(-1)).reshape(TANH_ORDER, t.shape[-1], -1)
            norm, peak = float(v.abs().sum(1).max()), float(z.abs().max())
            self._taylor[nxt] = (h.contiguous(), norm, peak) if h.numel() <= CHUNK_ELEMENTS else None
        return self._taylor[nxt]

    def _through_tanh(self, nxt: int, rows: torch.Tensor, moved: torch.Tensor) -> torch.Tensor | None:
        """The change of Linear ``nxt + 2``'s outputs, shape ``(k, output, row)`` (rows: the flattened leading
        dimensions), when Linear ``nxt``'s input feature ``rows[r]`` moves by ``moved[r]``, through the Tanh between
        them by its Taylor series; None when the layers are others or a move is too large for the series.

        Linear ``nxt``'s outputs move by the rank-one ``moved[r] w_i^T`` (``w_i``: column ``i`` of its weight), the
        tanh by ``sum_p c_p (moved[r] w_i^T)^p``, and the next Linear's outputs by ``sum_p moved[r]^p G_p[i]`` with
        ``G_p[i] = (c_p * (w_i^p)^T) V^T``: one small product per perturbed unit and a few passes over
        ``(batch, outputs)`` per perturbation, instead of a tanh over ``(batch, hidden)`` and a matrix product.
        """
        kids = self.children
        if nxt + 2 >= len(kids) or type(kids[nxt + 1]) is not nn.Tanh or not _plain_linear(kids[nxt + 2]):
            return None
        terms = self._taylor_terms(nxt)
        if terms is None:
            return None
        h, norm, peak = terms
        eps = torch.finfo(h.dtype).eps
        k, out = len(rows), self.cache[nxt + 3]
        e = moved.reshape(k, -1)
        units, where = torch.unique(rows, return_inverse=True)
        w = _weight(kids[nxt]).index_select(1, units)
        r = float((e.abs().amax(1) * w.abs().amax(0).index_select(0, where)).max()) if k else 0.0
        # The lowest order whose remainder bound (TANH_ORDER's comment) fits: 2 or 3 at the default steps.
        order = next(
            (
                p
                for p in range(1, TANH_ORDER + 1)
                if r < 0.5 and math.tan(1.0) * r ** (p + 1) / (1 - r) * norm <= TRUNCATION_SHARE * eps * peak
            ),
            0,
        )
        if not order:
            return None
        e = e.unsqueeze(1)
        wt, power = w.T.contiguous(), w.T.contiguous()
        acc: torch.Tensor | None = None
        g = [torch.empty(0)] * order
        for p in range(order):
            g[p] = (power @ h[p]).view(len(units), out.shape[-1], -1)
            g[p] = g[p].expand(k, *g[p].shape[1:]) if len(units) == 1 else g[p].index_select(0, where)
            power = power * wt
        for p in reversed(range(order)):
            acc = g[p] if acc is None else torch.addcmul(g[p], e, acc)
        assert acc is not None
        return e * acc

    def _finish(self, start: int, change: torch.Tensor) -> torch.Tensor:
        """The losses when the input of child ``start`` moves by ``change`` (``(k, feature, row)``, see above).

        After the last child, with the mean cross-entropy of class indices (``self.target``), in closed form:
        ``lse(z + d) - lse(z) = log1p(sum_o softmax(z)_o expm1(d_o))`` per row, so the loss is the cached one plus
        ``mean(log1p(...) - d[target])``: the same value as a plain evaluation up to rounding (the sum over classes
        of a plain log-softmax is replaced by one over tiny changes, which rounds less).
        """
        base = self.cache[start]
        if start == len(self.children) and self.target is not None and float(change.abs().max()) < 1.0:
            assert self.softmax is not None and self.base_loss is not None
            k = change.shape[0]
            grown = torch.log1p((self.softmax * torch.expm1(change)).sum(1))
            picked = change.gather(1, self.target.view(1, 1, -1).expand(k, 1, -1)).squeeze(1)
            return ((grown - picked).mean(1) + self.base_loss).double()
        moved = base.reshape(1, -1, base.shape[-1]) + change.transpose(1, 2)
        return self._suffix(start, moved.reshape(-1, *base.shape)).double()

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
            moved = (column - before).contiguous()
            beyond = self._through_tanh(nxt, rows, moved)
            if beyond is not None:
                return self._finish(nxt + 3, beyond)
            if nxt + 1 == len(self.children) and self.target is not None:
                return self._finish(nxt + 1, row.view(k, -1, 1) * moved.view(k, 1, -1))
            moved = moved.unsqueeze(-1)
            return self._suffix(nxt + 1, torch.addcmul(self.cache[nxt + 1], moved, row).contiguous()).double()
        batch = self.cache[nxt].unsqueeze(0).repeat((k,) + (1,) * z.dim())
        where = rows.view((*shape, 1)).expand((*column.shape, 1))
        batch.scatter_(-1, where, column.contiguous().unsqueeze(-1))
        return self._suffix(nxt, batch).double()


def class_targets(loss_fn: Any, targets: tuple[Any, ...]) -> torch.Tensor | None:
    """The class indices when ``loss_fn(output, *targets)`` is the plain mean cross-entropy, else None.

    ``F.cross_entropy`` itself or an ``nn.CrossEntropyLoss`` with its defaults (no class weights, mean, no label
    smoothing), a 1-d integer target with no ``ignore_index`` entry.

    Examples
    --------
    >>> class_targets(torch.nn.functional.cross_entropy, (torch.tensor([0, 2]),))
    tensor([0, 2])
    >>> class_targets(torch.nn.CrossEntropyLoss(label_smoothing=0.1), (torch.tensor([0, 2]),)) is None
    True
    """
    if len(targets) != 1 or not isinstance(targets[0], torch.Tensor) or targets[0].dtype != torch.int64:
        return None
    target, ignore = targets[0], -100
    if type(loss_fn) is nn.CrossEntropyLoss:
        if loss_fn.weight is not None or loss_fn.reduction != "mean" or loss_fn.label_smoothing != 0:
            return None
        ignore = loss_fn.ignore_index
    elif loss_fn is not torch.nn.functional.cross_entropy:
        return None
    return target if target.dim() == 1 and not bool((target == ignore).any()) else None


def _plain_linear(module: nn.Module) -> bool:
    """An nn.Linear computing ``x W^T + b`` (a subclass with a forward of its own, masked or low-rank, may not)."""
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


def _weight(layer: nn.Module) -> torch.Tensor:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return weight.detach()
