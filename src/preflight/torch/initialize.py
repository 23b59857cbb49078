"""Initialize a torch model's Linear and Conv layers with preflight's schemes, or with LSUV.

``scheme="auto"`` picks per layer by the activation that follows it, found by tracing the model with torch.fx (or,
when it cannot be traced, by the order the modules were registered in): ReLU-like activations get He with the
activation's gain, tanh, sigmoid, SELU and no activation get LeCun (variance 1/fan_in: the mean-field gain chi = 1
for tanh). The report says, per layer, what followed and what was chosen.

Parameters with ``requires_grad=False`` are left as they are by default: a frozen pretrained backbone stays
pretrained (``include_frozen=True`` initializes them too); the report lists them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from preflight._util.aliases import RngLike
from preflight._util.validation import check_in_range, check_positive_int, describe
from preflight._util.warn import warn
from preflight.init import InitializationReport, LayerInit, LSUVWarning
from preflight.init import schemes as initializers
from preflight.torch._model import describe_value

__all__ = ["InitializationReport", "LayerInit", "initialize"]

LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: The scheme shown for a layer whose weight is frozen and so left as it was.
KEPT = "kept (frozen)"
#: Activation modules and functions by the name preflight.init.gain knows; "relu" stands for the ReLU family.
ACTIVATION_MODULES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu", nn.GELU: "relu", nn.SiLU: "relu", nn.ELU: "relu", nn.CELU: "relu",
    nn.Mish: "relu", nn.Softplus: "relu", nn.LeakyReLU: "leaky_relu", nn.PReLU: "leaky_relu", nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid", nn.SELU: "selu", nn.Hardtanh: "tanh", nn.Softsign: "tanh",
}  # fmt: skip
ACTIVATION_FUNCTIONS: dict[Any, str] = {
    torch.relu: "relu", nn.functional.relu: "relu", nn.functional.gelu: "relu", nn.functional.silu: "relu",
    nn.functional.elu: "relu", nn.functional.leaky_relu: "leaky_relu", torch.tanh: "tanh", torch.sigmoid: "sigmoid",
    nn.functional.selu: "selu", nn.functional.softplus: "relu",
}  # fmt: skip
ACTIVATION_METHODS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid"}
#: Modules and functions a signal passes through on its way to the activation without changing which one it is.
TRANSPARENT_MODULES: tuple[type[nn.Module], ...] = (
    nn.Dropout, nn.Flatten, nn.Identity, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
)  # fmt: skip
TRANSPARENT_CALLS = {"flatten", "view", "reshape", "dropout", "contiguous", "max_pool2d", "avg_pool2d"}


def initialize(
    model: nn.Module,
    scheme: str | initializers.Initializer = "auto",
    *,
    rng: RngLike = 0,
    batch: Any = None,
    tol: float = 0.1,
    max_iterations: int = 10,
    include_frozen: bool = False,
) -> InitializationReport:
    """Initialize the trainable Linear/Conv weights of ``model`` in place, biases to zero, and say what was chosen.

    Parameters
    ----------
    model : nn.Module
        Modified in place (that is the point); nothing else about it changes. Parameters with
        ``requires_grad=False`` are left as they are (see ``include_frozen``).
    scheme : "auto", "lsuv", a name of ``preflight.init.SCHEMES``, or an initializer
        "auto": by the activation that follows each layer (module docstring). "lsuv": orthogonal, then each
        layer's output rescaled to unit variance on ``batch`` (Mishkin & Matas 2015).
    rng : Generator, RandomState or int seed
    batch : tensor or tuple of tensors
        The model's input, needed by "lsuv" (a few hundred rows). The model is run on it once before any weight
        changes: a batch it cannot take (wrong shape or dtype) is a ValueError and leaves the model untouched.
    tol, max_iterations : float, int
        LSUV stops on a layer when ``|Var - 1| <= tol``, or after ``max_iterations`` rescalings (then warns).
    include_frozen : bool
        Also initialize parameters with ``requires_grad=False``. By default they are kept, so that a frozen
        pretrained backbone is not wiped; a layer whose weight is kept shows the scheme "kept (frozen)", and the
        report's ``skipped`` lists every parameter kept.

    Returns
    -------
    InitializationReport

    Raises
    ------
    ValueError
        A model without Linear/Conv layers, an unknown scheme, a missing or unusable ``batch`` for "lsuv".

    Examples
    --------
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> [(r.name, r.activation, r.scheme) for r in initialize(model).layers]
    [('0', 'relu', 'he (gain sqrt 2)'), ('2', 'none', 'lecun')]
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {describe(model)}")
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LAYERS)]
    if not layers:
        raise ValueError("model: it has no Linear or Conv layer to initialize")
    generator = initializers.as_generator(rng)
    activations, traced = following_activations(model)
    kept = () if include_frozen else _frozen(layers)
    if scheme == "lsuv":
        return _lsuv(model, layers, activations, traced, batch, generator, tol, max_iterations, kept)
    chosen: list[LayerInit] = []
    for name, layer in layers:
        act = activations.get(name, ("none", None))
        label, init = _scheme_for(act) if scheme == "auto" else (_name(scheme), initializers.get(scheme))
        std = _apply(layer, init, generator, _keeps(kept, name))
        label = KEPT if _keeps(kept, name)[0] else label
        chosen.append(LayerInit(name, tuple(_weight(layer).shape), _act_label(act), label, std))
    return InitializationReport(scheme if isinstance(scheme, str) else _name(scheme), traced, tuple(chosen), kept)


def _parameter_name(layer_name: str, attribute: str) -> str:
    return f"{layer_name}.{attribute}" if layer_name else attribute


def _frozen(layers: list[tuple[str, nn.Module]]) -> tuple[str, ...]:
    """The names of the layers' weights and biases with ``requires_grad=False``."""
    found = []
    for name, layer in layers:
        for attribute in ("weight", "bias"):
            p = getattr(layer, attribute, None)
            if isinstance(p, torch.Tensor) and not p.requires_grad:
                found.append(_parameter_name(name, attribute))
    return tuple(found)


def _keeps(kept: tuple[str, ...], name: str) -> tuple[bool, bool]:
    """Whether the layer's weight, and its bias, are to be kept as they are."""
    return _parameter_name(name, "weight") in kept, _parameter_name(name, "bias") in kept


def _name(scheme: Any) -> str:
    return scheme if isinstance(scheme, str) else getattr(scheme, "__name__", "custom")


def _act_label(act: tuple[str, float | None]) -> str:
    return act[0] if act[1] is None else f"{act[0]}({act[1]:g})"


def _scheme_for(act: tuple[str, float | None]) -> tuple[str, initializers.Initializer]:
    kind, param = act
    if kind in ("relu", "leaky_relu"):
        g = initializers.gain(kind, param)
        label = (
            "he (gain sqrt 2)"
            if kind == "relu"
            else f"he (gain {g:.4g}, slope {param if param is not None else 0.01:g})"
        )
        return label, initializers.variance_scaling(g**2, "fan_in", "normal")
    return "lecun", initializers.lecun_normal


def _apply(
    layer: nn.Module, init: initializers.Initializer, generator: Any, keep: tuple[bool, bool] = (False, False)
) -> float:
    """Draw the weight and zero the bias, each unless ``keep`` says so; the weight's standard deviation."""
    weight = _weight(layer)
    with torch.no_grad():
        if not keep[0]:
            values = init(generator, tuple(weight.shape), np.float64)
            weight.copy_(torch.from_numpy(np.ascontiguousarray(values)).to(weight.dtype))
        bias = getattr(layer, "bias", None)
        if isinstance(bias, torch.Tensor) and not keep[1]:
            bias.zero_()
    return float(weight.detach().double().std())


def following_activations(model: nn.Module) -> tuple[dict[str, tuple[str, float | None]], str]:
    """For every Linear/Conv layer's name, the activation that follows it (and its parameter), and how it was found."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        return _by_registration(model), f"by registration order (torch.fx could not trace: {reason})"
    modules = dict(model.named_modules())
    found: dict[str, tuple[str, float | None]] = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(node.target), LAYERS):
            found[str(node.target)] = _walk(node, modules)
    return found, "traced with torch.fx"


def _activation_of(node: Any, modules: dict[str, nn.Module]) -> tuple[str, float | None] | None:
    if node.op == "call_module":
        module = modules[node.target]
        for kind, name in ACTIVATION_MODULES.items():
            if isinstance(module, kind):
                return name, getattr(module, "negative_slope", None) if name == "leaky_relu" else None
    if node.op == "call_function" and node.target in ACTIVATION_FUNCTIONS:
        name = ACTIVATION_FUNCTIONS[node.target]
        slope = node.kwargs.get("negative_slope", node.args[1] if len(node.args) > 1 else None)
        return name, (float(slope) if isinstance(slope, (int, float)) else None) if name == "leaky_relu" else None
    if node.op == "call_method" and node.target in ACTIVATION_METHODS:
        return ACTIVATION_METHODS[node.target], None
    return None


def _transparent(node: Any, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], TRANSPARENT_MODULES)
    name = getattr(node.target, "__name__", str(node.target))
    return node.op in ("call_function", "call_method") and name in TRANSPARENT_CALLS


def _walk(node: Any, modules: dict[str, nn.Module]) -> tuple[str, float | None]:
    current = node
    for _ in range(16):
        users = list(current.users)
        if len(users) != 1:
            return ("none", None)
        found = _activation_of(users[0], modules)
        if found is not None:
            return found
        if not _transparent(users[0], modules):
            return ("none", None)
        current = users[0]
    return ("none", None)


def _by_registration(model: nn.Module) -> dict[str, tuple[str, float | None]]:
    found: dict[str, tuple[str, float | None]] = {}
    pending: str | None = None
    for name, module in model.named_modules():
        if isinstance(module, LAYERS):
            if pending is not None:
                found[pending] = ("none", None)
            pending = name
        elif pending is not None and type(module) in ACTIVATION_MODULES:
            slope = getattr(module, "negative_slope", None)
            found[pending] = (ACTIVATION_MODULES[type(module)], slope)
            pending = None
    if pending is not None:
        found[pending] = ("none", None)
    return found


def _lsuv(
    model: nn.Module,
    layers: list[tuple[str, nn.Module]],
    activations: dict[str, tuple[str, float | None]],
    traced: str,
    batch: Any,
    generator: Any,
    tol: float,
    max_iterations: int,
    kept: tuple[str, ...],
) -> InitializationReport:
    if batch is None:
        raise ValueError("batch: scheme='lsuv' needs a batch of inputs to measure each layer's output on")
    tol = check_in_range(tol, name="tol", low=0.0, high=1.0, low_open=True, high_open=True)
    max_iterations = check_positive_int(max_iterations, name="max_iterations")
    inputs = batch if isinstance(batch, tuple) else (batch,)
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()  # no dropout while measuring
        try:
            order = _execution_order(model, layers, inputs)  # before any weight changes: a bad batch fails here
        except (RuntimeError, TypeError, ValueError, IndexError) as exc:
            raise _batch_error(layers, batch, exc) from exc
        return _lsuv_scaled(model, layers, order, activations, traced, inputs, generator, tol, max_iterations, kept)
    finally:
        for m, training in flags.items():
            m.training = training


def _batch_error(layers: list[tuple[str, nn.Module]], batch: Any, exc: Exception) -> ValueError:
    """What the model's first registered layer takes, beside what came and torch's reason."""
    name, first = layers[0]
    takes = f"{first.in_features} input features" if isinstance(first, nn.Linear) else (
        f"{getattr(first, 'in_channels', '?')} input channels"
    )  # fmt: skip
    dtype = str(_weight(first).dtype).replace("torch.", "")
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    got = describe_value(batch) if not isinstance(batch, tuple) else f"({', '.join(map(describe_value, batch))})"
    return ValueError(
        f"batch: the model cannot run on it ({reason}); expected the model's input, its first layer {name!r} "
        f"({type(first).__name__}) taking {takes} in {dtype}, got {got}; no weight was changed"
    )


def _lsuv_scaled(
    model: nn.Module,
    layers: list[tuple[str, nn.Module]],
    order: list[tuple[str, nn.Module]],
    activations: dict[str, tuple[str, float | None]],
    traced: str,
    inputs: tuple[Any, ...],
    generator: Any,
    tol: float,
    max_iterations: int,
    kept: tuple[str, ...],
) -> InitializationReport:
    for name, layer in layers:
        _apply(layer, initializers.orthogonal(1.0), generator, _keeps(kept, name))
    records = []
    for name, layer in order:
        if _keeps(kept, name)[0]:
            std = float(_weight(layer).detach().double().std())
            label = _act_label(activations.get(name, ("none", None)))
            records.append(LayerInit(name, tuple(_weight(layer).shape), label, KEPT, std))
            continue
        first = variance = _output_variance(model, layer, inputs)
        iterations = 0
        while abs(variance - 1.0) > tol and iterations < max_iterations and variance > 1e-12:
            with torch.no_grad():
                _weight(layer).div_(math.sqrt(variance))
            variance = _output_variance(model, layer, inputs)
            iterations += 1
        if abs(variance - 1.0) > tol:
            warn(f"LSUV: layer {name} ended with output variance {variance:.3g}", LSUVWarning)
        weight = _weight(layer)
        records.append(LayerInit(name, tuple(weight.shape), _act_label(activations.get(name, ("none", None))),
                                 "orthogonal + rescale", float(weight.detach().double().std()), first, variance,
                                 iterations))  # fmt: skip
    return InitializationReport("lsuv", traced, tuple(records), kept)


def _execution_order(
    model: nn.Module, layers: list[tuple[str, nn.Module]], inputs: tuple[Any, ...]
) -> list[tuple[str, nn.Module]]:
    order: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda mod, _i, _o: order.append(mod)) for _, m in layers]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    names = {id(m): n for n, m in layers}
    seen: list[Any] = []
    for m in order:
        if all(m is not s[1] for s in seen):
            seen.append((names[id(m)], m))
    return seen


def _output_variance(model: nn.Module, layer: nn.Module, inputs: tuple[Any, ...]) -> float:
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        handle.remove()
    return float(captured[0].double().var())


def _weight(layer: nn.Module) -> torch.Tensor:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return weight
