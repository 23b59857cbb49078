"""Signal propagation through a torch model: the NumPy diagnostics' per-layer report, measured with hooks.

Every Linear/Conv layer is a "layer" (in execution order); its output is the pre-activation ``Z_l`` and the
activation that follows (found as :func:`preflight.torch.initialize` finds it) gives ``A_l = phi(Z_l)``. Forward
hooks record ``Z_l`` and the layer's input; tensor hooks record ``dL/dZ_l`` and ``dL/dA_{l-1}`` in one backward
pass. The statistics, the mean-field predictions, the verdicts and their thresholds are those of
:mod:`preflight.propagation`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from preflight import propagation as core
from preflight._util.validation import check_in_range, describe
from preflight.init.schemes import fans
from preflight.propagation.layers import LayerRecord, layer_stats
from preflight.torch._model import FunctionalModel, scalar_loss
from preflight.torch.initialize import LAYERS, following_activations

__all__ = ["propagation"]

#: preflight activation names (those :func:`preflight.propagation.mean_field` knows) for what initialize finds.
_NAMES = {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid", "none": "linear"}
_TORCH = {"relu": torch.relu, "leaky_relu": nn.functional.leaky_relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def propagation(
    model: nn.Module,
    batch: Any,
    loss_fn: Any = None,
    *,
    learning_rate: float = 0.01,
    thresholds: core.Thresholds | None = None,
    warn: bool = True,
    seed: int = 0,
) -> core.PropagationReport:
    """Per-layer forward and backward statistics of ``model`` on ``batch``, with verdicts and a recommendation.

    Parameters
    ----------
    model : nn.Module
        Run in eval mode (no dropout) through ``functional_call`` on copies of its parameters: nothing of it changes.
    batch : tensor or (inputs, target)
    loss_fn : callable, optional
        ``loss_fn(output, target)``, a scalar tensor. Without it (or without a target) the backward pass starts from
        a random unit-variance gradient of the output, divided by the batch size.
    learning_rate : float
        For the update-to-weight ratio.
    thresholds, warn
        As in :func:`preflight.propagation.analyze`.

    Returns
    -------
    preflight.propagation.PropagationReport

    Examples
    --------
    >>> layers = [m for _ in range(10) for m in (torch.nn.Linear(64, 64), torch.nn.ReLU())]
    >>> model = torch.nn.Sequential(*layers, torch.nn.Linear(64, 4))
    >>> linear = [m for m in model if isinstance(m, torch.nn.Linear)]
    >>> _ = [(torch.nn.init.normal_(m.weight, std=0.01), torch.nn.init.zeros_(m.bias)) for m in linear]
    >>> propagation(model, torch.randn(128, 64), warn=False).verdict
    'vanishing'
    """
    learning_rate = check_in_range(learning_rate, name="learning_rate", low=0.0, high=math.inf, low_open=True)
    thresholds = core.check_thresholds(thresholds)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {describe(model)}")
    if isinstance(batch, torch.Tensor):
        inputs, target = (batch,), None
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        inputs = tuple(batch[0]) if isinstance(batch[0], (tuple, list)) else (batch[0],)
        target = batch[1]
    else:
        raise ValueError(f"batch: expected a tensor of inputs or a pair (inputs, target), got {describe(batch)}")
    activations, _ = following_activations(model)
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        record = _record(model, inputs, target, loss_fn, seed)
    finally:
        for m, training in flags.items():
            m.training = training
    layers = _stats(record, activations, inputs, learning_rate, thresholds)
    recommendation = core.recommend_for([s.activation for s in layers[:-1]])
    report = core.PropagationReport(
        tuple(layers), core.overall_verdict(layers), recommendation, learning_rate, thresholds
    )
    if warn:
        report.warn()
    return report


def _record(model: nn.Module, inputs: tuple[Any, ...], target: Any, loss_fn: Any, seed: int) -> list[dict[str, Any]]:
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    layers = {id(m): n for n, m in model.named_modules() if isinstance(m, LAYERS)}
    # A weight by its first name (the model holds these copies during the call): a tied weight, or a layer used
    # twice, is one tensor under several names.
    names = {id(p): n for n, p in params.items()}
    if not layers:
        raise ValueError("model: it has no Linear or Conv layer to diagnose")
    record: list[dict[str, Any]] = []

    def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
        entry: dict[str, Any] = {"name": layers[id(module)], "z": output.detach(), "x": args[0].detach()}
        entry["weight"] = names.get(id(module.weight), f"{entry['name']}.weight" if entry["name"] else "weight")
        _hook(output, entry, "dz")
        if args[0].requires_grad:
            _hook(args[0], entry, "dx")
        record.append(entry)

    handles = [m.register_forward_hook(hook) for m in model.modules() if id(m) in layers]
    try:
        with torch.enable_grad():
            output = FunctionalModel(model)({**params, **buffers}, inputs)
            if loss_fn is not None and target is not None:
                loss = scalar_loss(loss_fn(output, target), "loss_fn")
            else:
                generator = torch.Generator().manual_seed(seed)
                upstream = torch.randn(output.shape, generator=generator, dtype=output.dtype)
                loss = (output * upstream).sum() / output.shape[0]
            grads = torch.autograd.grad(loss, [params[e["weight"]] for e in record], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    for (
        entry,
        g,
    ) in zip(record, grads, strict=True):
        entry["w"] = params[entry["weight"]].detach()
        entry["dw"] = torch.zeros_like(entry["w"]) if g is None else g.detach()
    return record


def _np(t: torch.Tensor) -> Any:
    return t.detach().double().numpy()


def _stats(
    record: list[dict[str, Any]],
    activations: dict[str, tuple[str, float | None]],
    inputs: tuple[Any, ...],
    learning_rate: float,
    thresholds: core.Thresholds,
) -> list[core.LayerStats]:
    input_rms = float(torch.sqrt(torch.mean(inputs[0].detach().double() ** 2)))
    records = []
    for i, e in enumerate(record):
        hidden = i < len(record) - 1
        kind, slope = activations.get(e["name"], ("none", None))
        z = _np(e["z"])
        a = z if not hidden or kind not in _TORCH else _np(_activate(e["z"], kind, slope))
        w = _np(e["w"])
        dx = e.get("dx")
        records.append(LayerRecord(
            _NAMES.get(kind, "relu"), z, a, w, fans(tuple(w.shape))[0], _np(e["dw"]),
            float(torch.linalg.vector_norm(e.get("dz", torch.zeros(1)).double())),
            float(np.linalg.norm(_np(dx))) if dx is not None else math.nan, 1 if z.ndim > 2 else -1,
        ))  # fmt: skip
    return layer_stats(records, input_rms, learning_rate, thresholds)


def _activate(z: torch.Tensor, kind: str, slope: float | None) -> torch.Tensor:
    if kind == "leaky_relu":
        return nn.functional.leaky_relu(z, slope if slope is not None else 0.01)
    return _TORCH[kind](z)


def _hook(tensor: torch.Tensor, entry: dict[str, Any], key: str) -> None:
    register: Any = tensor.register_hook  # untyped in torch's stubs
    register(lambda g: entry.__setitem__(key, g.detach()))
