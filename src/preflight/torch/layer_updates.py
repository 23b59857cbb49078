"""The output of one layer when one of its parameters moves by one coordinate, many moves at once, without rerunning
the layer: the structured updates behind the graph strategy (:mod:`preflight.torch.graph`).

Each update takes the layer's cached input ``u`` and output ``z``, flat coordinates ``coords`` into the parameter
and steps ``deltas`` (k of each), and returns the k moved outputs stacked along a new first dimension:

- ``Linear``: ``W[i, j] += d`` adds ``d * u[..., j]`` to output feature ``i``; ``b[i] += d`` adds ``d``.
- ``Conv1d``/``Conv2d`` (zero padding): ``w[o, c, *p] += d`` adds ``d`` times a shifted, strided copy of input
  channel ``c`` (a column of ``unfold(u)``) to output channel ``o``; ``b[o] += d`` adds ``d``.
- ``Embedding`` (no ``max_norm``): ``E[r, j] += d`` adds ``d`` to feature ``j`` of the positions whose index is ``r``.
- ``LayerNorm``, and ``BatchNorm`` outside training mode: the affine ``x_hat * w + b`` after a normalization that
  does not depend on ``w`` or ``b``, so ``w[i] += d`` adds ``d * x_hat`` at element (or channel) ``i``.

Anything else returns None and the caller runs the layer itself, batched over the perturbed parameters.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["moved_outputs", "plain"]

M = TypeVar("M", bound=nn.Module)


def plain(module: nn.Module, kind: type[M]) -> TypeGuard[M]:
    """``module`` is a ``kind`` computing ``kind``'s own forward (a subclass with a forward of its own may not)."""
    return isinstance(module, kind) and type(module).forward is kind.forward


def moved_outputs(
    module: nn.Module, pname: str, args: tuple[Any, ...], z: torch.Tensor, coords: torch.Tensor, deltas: torch.Tensor
) -> torch.Tensor | None:
    """The outputs of ``module`` with ``pname`` moved at ``coords`` by ``deltas``: shape ``(k, *z.shape)``, or None.

    None when the layer has no structured update here (another type, a subclass with its own forward, a padding
    mode other than zeros, ``max_norm``, batch norm in training mode): the caller recomputes the layer instead.

    Examples
    --------
    >>> layer = nn.Linear(3, 2).double()
    >>> u = torch.randn(4, 3, dtype=torch.float64)
    >>> moved = moved_outputs(layer, "weight", (u,), layer(u), torch.tensor([4]), torch.tensor([0.5]).double())
    >>> bool(torch.allclose(moved[0][:, 1] - layer(u)[:, 1], 0.5 * u[:, 1]))
    True
    """
    if len(args) != 1 or not isinstance(args[0], torch.Tensor) or not isinstance(z, torch.Tensor):
        return None
    u = args[0]
    deltas = deltas.to(z.dtype)
    if plain(module, nn.Linear) and u.dim() >= 1:
        return _linear(module, pname, u, z, coords, deltas)
    if (plain(module, nn.Conv1d) or plain(module, nn.Conv2d)) and module.padding_mode == "zeros":
        return _conv(module, pname, u, z, coords, deltas)
    if plain(module, nn.Embedding) and module.max_norm is None and pname == "weight":
        width = module.embedding_dim
        hits = (u.unsqueeze(0) == (coords // width).view((-1,) + (1,) * u.dim())).to(z.dtype)
        return _add_at(z, -1, coords % width, hits * _column(deltas, u.dim()))
    if plain(module, nn.LayerNorm):
        x_hat = F.layer_norm(u, module.normalized_shape, None, None, module.eps)
        return _affine(pname, z, x_hat, len(module.normalized_shape), coords, deltas)
    if (plain(module, nn.BatchNorm1d) or plain(module, nn.BatchNorm2d)) and not module.training:
        return _batch_norm(module, pname, u, z, coords, deltas)
    return None


def _column(deltas: torch.Tensor, dims: int) -> torch.Tensor:
    return deltas.view((-1,) + (1,) * dims)


def _add_at(z: torch.Tensor, dim: int, where: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """k copies of ``z``, the r-th with ``change[r]`` added at index ``where[r]`` of dimension ``dim`` (of ``z``).

    ``change[r]`` has ``z``'s shape without ``dim``.
    """
    dim = dim % z.dim()
    k = len(where)
    moved = z.unsqueeze(0).repeat((k,) + (1,) * z.dim())
    shape = [k] + [1] * z.dim()
    index = where.view(shape).expand(*change.shape[: dim + 1], 1, *change.shape[dim + 1 :])
    return moved.scatter_add_(dim + 1, index, change.unsqueeze(dim + 1))


def _linear(
    layer: nn.Linear, pname: str, u: torch.Tensor, z: torch.Tensor, coords: torch.Tensor, deltas: torch.Tensor
) -> torch.Tensor | None:
    n_in, lead = layer.in_features, z.dim() - 1
    if pname == "bias":
        return _add_at(z, -1, coords, _column(deltas, lead).expand(len(coords), *z.shape[:-1]))
    if pname != "weight":
        return None
    columns = u.index_select(-1, coords % n_in).movedim(-1, 0)
    return _add_at(z, -1, coords // n_in, _column(deltas, lead) * columns)


def _conv_input(conv: nn.Conv1d | nn.Conv2d, u: torch.Tensor) -> tuple[torch.Tensor, list[int]] | None:
    """``u`` padded as the convolution pads it (an explicit ``(left, right)`` per spatial dimension), or None."""
    spatial = len(conv.kernel_size)
    if u.dim() not in (spatial + 1, spatial + 2):
        return None
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            pads = [(0, 0)] * spatial
        else:  # "same": torch pads dilation * (kernel - 1) in all, the extra element on the right
            totals = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size, strict=True)]
            pads = [(t // 2, t - t // 2) for t in totals]
    else:
        pads = [(p, p) for p in conv.padding]
    flat = [side for pair in reversed(pads) for side in pair]
    return F.pad(u, flat), list(conv.kernel_size)


def _conv(
    conv: nn.Conv1d | nn.Conv2d,
    pname: str,
    u: torch.Tensor,
    z: torch.Tensor,
    coords: torch.Tensor,
    deltas: torch.Tensor,
) -> torch.Tensor | None:
    batched = u.dim() == len(conv.kernel_size) + 2
    zb = z if batched else z.unsqueeze(0)
    if pname == "bias":
        change = _column(deltas, zb.dim() - 1).expand(len(coords), zb.shape[0], *zb.shape[2:])
        moved = _add_at(zb, 1, coords, change)
        return moved if batched else moved.squeeze(1)
    padded = _conv_input(conv, u)
    if pname != "weight" or padded is None:
        return None
    x, kernel = padded
    x = x if batched else x.unsqueeze(0)
    if len(kernel) == 1:  # as a 2-d convolution of height 1
        x, kernel = x.unsqueeze(2), [1, *kernel]
        stride, dilation = (1, *conv.stride), (1, *conv.dilation)
    else:
        stride, dilation = tuple(conv.stride), tuple(conv.dilation)
    # Column c * prod(kernel) + p of unfold(x): input channel c shifted by kernel position p, on the output grid.
    patches = F.unfold(x, tuple(kernel), dilation=dilation, stride=stride)
    per_group, span = conv.in_channels // conv.groups, math.prod(kernel)
    outputs = coords // (per_group * span)
    group = outputs // (conv.out_channels // conv.groups)
    columns = group * per_group * span + coords % (per_group * span)
    change = patches.index_select(1, columns).movedim(1, 0).reshape(len(coords), zb.shape[0], *zb.shape[2:])
    moved = _add_at(zb, 1, outputs, _column(deltas, zb.dim() - 1) * change)
    return moved if batched else moved.squeeze(1)


def _affine(
    pname: str, z: torch.Tensor, x_hat: torch.Tensor, trailing: int, coords: torch.Tensor, deltas: torch.Tensor
) -> torch.Tensor | None:
    """LayerNorm's ``x_hat * w + b``: ``w`` and ``b`` span the last ``trailing`` dimensions."""
    if pname not in ("weight", "bias"):
        return None
    lead = z.shape[: z.dim() - trailing]
    flat_z = z.reshape(*lead, -1)
    if pname == "weight":
        change = _column(deltas, len(lead)) * x_hat.reshape(*lead, -1).index_select(-1, coords).movedim(-1, 0)
    else:
        change = _column(deltas, len(lead)).expand(len(coords), *lead)
    return _add_at(flat_z, -1, coords, change).reshape(len(coords), *z.shape)


def _batch_norm(
    norm: nn.BatchNorm1d | nn.BatchNorm2d,
    pname: str,
    u: torch.Tensor,
    z: torch.Tensor,
    coords: torch.Tensor,
    deltas: torch.Tensor,
) -> torch.Tensor | None:
    if pname not in ("weight", "bias") or u.dim() < 2:
        return None
    batch_stats = norm.running_mean is None
    x_hat = F.batch_norm(u, norm.running_mean, norm.running_var, None, None, batch_stats, 0.0, norm.eps)
    rest = (z.shape[0], *z.shape[2:])
    if pname == "weight":
        change = _column(deltas, z.dim() - 1) * x_hat.index_select(1, coords).movedim(1, 0)
    else:
        change = _column(deltas, z.dim() - 1).expand(len(coords), *rest)
    return _add_at(z, 1, coords, change)
