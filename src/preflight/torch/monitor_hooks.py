"""What :class:`preflight.torch.Monitor` does on a monitored step: hooks that summarize, and the summaries' rows.

On a monitored step, forward hooks on the Linear/Conv layers summarize each layer's output ``Z`` (and
``A = phi(Z)``, phi the activation that follows, found as :func:`preflight.torch.initialize` finds it) into a few
float64 numbers, tensor hooks on ``Z`` and on the layer's input keep the norms of ``dL/dZ`` and ``dL/dA``, and a
post-accumulate-grad hook keeps ``|dL/dW|``. The hooks keep summaries only (a handful of scalars per layer, still on
the model's device), never the activations, and never return anything, so the model's outputs and gradients are
bit-identical with and without them. The summaries become Python floats in one transfer when the step ends; the
figures are those of :func:`preflight.torch.propagation`, computed the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from preflight.propagation.stats import ratio
from preflight.torch.propagation import _NAMES, _TORCH, _activate

__all__ = ["StepRecorder", "all_finite", "tensors_in"]

#: The forward summary of one layer, by position: the sums of Z and Z^2, the number of entries, the sums of A and A^2,
#: the number of saturated activations and of dead units (NaN where they do not apply), and the number of units.
_FORWARD = ("sum_z", "sum_z2", "count", "sum_a", "sum_a2", "saturated", "dead", "units")
#: Dtypes whose reductions run in float32 first (torch reduces half precision poorly and overflows at 65504).
_HALF = (torch.float16, torch.bfloat16)


def tensors_in(value: Any) -> Iterable[torch.Tensor]:
    """The tensors in a model's input or output: a tensor, or tensors nested in tuples, lists and dicts."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


def all_finite(value: Any) -> bool:
    """No NaN or infinity in any floating tensor of ``value`` (one device-to-host transfer per tensor)."""
    return all(bool(torch.isfinite(t).all()) for t in tensors_in(value) if t.is_floating_point())


def _norm(tensor: torch.Tensor) -> torch.Tensor:
    """The Euclidean norm in the tensor's own precision (float32 and float64: torch's cascade summation is good to
    ~1e-6 relative, and it is 5x faster than a float64 copy here), half precision in float32. A float32 norm beyond
    its range (entries ~1e19) comes out inf and is reported as non-finite, which at that size it nearly is."""
    detached = tensor.detach()
    norm: torch.Tensor = torch.linalg.vector_norm(detached, dtype=torch.float32 if detached.dtype in _HALF else None)
    return norm


def _sums(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and sum of squares in the tensor's precision (float32 or float64), as float64.

    These are diagnostic figures read to three digits against thresholds decades apart: torch's float32 cascade sum
    and BLAS's dot are good to ~1e-6 relative here, and 3-4x faster than accumulating in float64 (measured on this
    CPU: 8 us against 32 us for a 128 x 256 sum). The sum is finite exactly when every value is, short of values
    near float32's limit (~1e34 summed 1e4 times), which are non-finite in all but name.
    """
    flat = x.reshape(-1)
    return x.sum().to(torch.float64), torch.dot(flat, flat).to(torch.float64)


def _forward_summary(z: torch.Tensor, kind: str, slope: float | None, level: float, channels: int) -> torch.Tensor:
    """The numbers of :data:`_FORWARD` for one layer's output ``z`` (units along axis ``channels``), as a float64
    tensor on its device. Moments by sums rather than ``torch.std_mean`` (20x slower on CPU here)."""
    z = z.detach()
    z = z.float() if z.dtype in _HALF else z
    a = _activate(z, kind, slope) if kind in _TORCH else z
    nan = torch.tensor(math.nan, dtype=torch.float64, device=z.device)
    name = _NAMES.get(kind, "relu")
    if name == "tanh":
        saturated = (a.abs() > level).sum().to(torch.float64)
    elif name == "sigmoid":
        saturated = ((2 * a - 1).abs() > level).sum().to(torch.float64)
    else:
        saturated = nan
    if name == "relu" and z.ndim >= 1:
        # A unit (feature, or channel of a conv) is dead when it is never active on the batch.
        axis = channels % z.ndim
        peak = z.amax(dim=tuple(d for d in range(z.ndim) if d != axis)) if z.ndim > 1 else z
        dead = (peak <= 0).sum().to(torch.float64)
    else:
        dead = nan
    count = torch.tensor(float(z.numel()), dtype=torch.float64, device=z.device)
    units = torch.tensor(float(z.shape[channels % z.ndim]) if z.ndim else 1.0, dtype=torch.float64, device=z.device)
    sum_z, sum_z2 = _sums(z)
    sum_a, sum_a2 = _sums(a) if a is not z else (sum_z, sum_z2)
    return torch.stack([sum_z, sum_z2, count, sum_a, sum_a2, saturated, dead, units])


class StepRecorder:
    """Collects the summaries of one monitored step.

    Parameters
    ----------
    layers : list of (name, module)
        The Linear/Conv layers, by name in the model.
    kinds : dict
        The activation after each layer, as :func:`preflight.torch.initialize.following_activations` finds it.
    saturation_level : float
        ``Thresholds.saturation_level``.
    forward : bool
        Hook the layers' forward passes (False for a compiled model, whose compiled code skips such hooks).
    snapshot_on_begin : bool
        Copy the weights when the step's first forward pass begins (when no optimizer hook does it before the
        update).
    """

    def __init__(
        self,
        layers: list[tuple[str, nn.Module]],
        kinds: dict[str, tuple[str, float | None]],
        saturation_level: float,
        *,
        forward: bool = True,
        snapshot_on_begin: bool = False,
    ) -> None:
        self.layers = layers
        self.kinds = kinds
        self.level = saturation_level
        self.forward_hooks = forward
        self.snapshot_on_begin = snapshot_on_begin
        self.order: list[str] = []
        self.summaries: dict[str, torch.Tensor] = {}
        self.delta: dict[str, torch.Tensor] = {}  # norms of dL/dZ
        self.input_grad: dict[str, torch.Tensor] = {}
        self.weight_grad: dict[str, torch.Tensor] = {}
        self.before: dict[str, torch.Tensor] = {}
        self.input_rms: torch.Tensor | None = None
        self.began = False
        self.paused = False
        self._handles: list[Any] = []

    def arm(self) -> None:
        """Register this step's hooks."""
        weights: dict[int, list[str]] = {}
        for name, module in self.layers:
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.requires_grad:
                weights.setdefault(id(weight), []).append(name)
            if self.forward_hooks:
                self._handles.append(module.register_forward_hook(self._layer_hook(name, module)))
        for name, module in self.layers:
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.Tensor) and weights.get(id(weight), [None])[0] == name:
                register: Any = weight.register_post_accumulate_grad_hook  # untyped in torch's stubs
                self._handles.append(register(self._grad_hook(weights[id(weight)])))

    def disarm(self) -> None:
        """Remove this step's hooks (the summaries stay)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def begin(self, args: tuple[Any, ...]) -> None:
        """A forward pass with gradients starts (the model's, or a layer's when the model's own forward is not
        called): the first time in the step, keep the rms of its input, and the weights if asked to."""
        if self.began:
            return
        self.began = True
        self._input_rms(args)
        if self.snapshot_on_begin:
            self.snapshot()

    def _input_rms(self, args: tuple[Any, ...]) -> None:
        """The rms of the first floating tensor of ``args`` (the model's input), unless it is already known."""
        first = next((t for t in tensors_in(args) if t.is_floating_point()), None)
        if first is not None and self.input_rms is None:
            self.input_rms = torch.sqrt(torch.mean(first.detach().to(torch.float64) ** 2))

    def snapshot(self) -> None:
        """Copy the layers' weights before the optimizer steps (for the update/weight ratio); once per step."""
        if self.before:
            return
        with torch.no_grad():
            for name, module in self.layers:
                weight = getattr(module, "weight", None)
                if isinstance(weight, torch.Tensor):
                    self.before[name] = weight.detach().clone()

    def _layer_hook(self, name: str, module: nn.Module) -> Callable[..., None]:
        kind, slope = self.kinds.get(name, ("none", None))
        # The units of a convolution are its channels (axis 1); a linear layer's are its last axis.
        channels = 1 if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) else -1

        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if self.paused or name in self.summaries or not torch.is_grad_enabled():
                return
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                return
            self.begin(args)
            self._input_rms(args)  # when the model's own input held no tensor (keyword arguments only)
            self.order.append(name)
            with torch.no_grad():
                self.summaries[name] = _forward_summary(output, kind, slope, self.level, channels)
            _keep_grad_norm(output, self.delta, name)
            if args and isinstance(args[0], torch.Tensor):
                _keep_grad_norm(args[0], self.input_grad, name)

        return hook

    def _grad_hook(self, names: list[str]) -> Callable[[torch.Tensor], None]:
        def hook(weight: torch.Tensor) -> None:
            if weight.grad is not None and not self.paused:
                value = _norm(weight.grad)
                for name in names:
                    self.weight_grad[name] = value

        return hook

    def rows(self) -> list[dict[str, Any]]:
        """One row per layer seen this step (in execution order; every layer by registration order when the
        forward pass was not hooked), with the figures of :data:`preflight.propagation.STATISTICS`."""
        names = self.order if self.forward_hooks else [name for name, _ in self.layers]
        if not names:
            return []
        modules = dict(self.layers)
        missing = torch.tensor([MISSING], dtype=torch.float64)
        packed: list[torch.Tensor] = []
        for name in names:
            weight = getattr(modules[name], "weight", None)
            after = weight.detach() if isinstance(weight, torch.Tensor) else None
            before = self.before.get(name)
            norms = [
                self.delta.get(name),
                self.input_grad.get(name),
                self.weight_grad.get(name),
                _norm(before if before is not None else after) if after is not None else None,
                _norm(after - before) if after is not None and before is not None else None,
            ]
            forward = self.summaries.get(name)
            if forward is None:
                forward = torch.full((len(_FORWARD),), math.nan, dtype=torch.float64)
            packed.append(torch.cat([*(_cpu(x, missing) for x in norms), _cpu(forward, missing)]))
        values = torch.stack(packed).tolist()
        rms_x = float(self.input_rms) if self.input_rms is not None else MISSING
        return [_row(i, names, values, self.kinds, rms_x, self.forward_hooks) for i in range(len(names))]


#: A norm that was not measured (norms are never negative; NaN is a real NaN).
MISSING = -1.0


def _cpu(value: torch.Tensor | None, default: torch.Tensor) -> torch.Tensor:
    return default if value is None else value.detach().to("cpu", torch.float64).reshape(-1)


def _keep_grad_norm(tensor: torch.Tensor, into: dict[str, torch.Tensor], name: str) -> None:
    """On the backward pass, keep the norm of the gradient reaching ``tensor`` (the first one, if it is used twice)."""
    if not tensor.requires_grad:
        return

    def hook(grad: torch.Tensor) -> None:
        into.setdefault(name, _norm(grad))

    register: Any = tensor.register_hook  # untyped in torch's stubs
    register(hook)


def _given(x: float) -> float | None:
    return None if x == MISSING else x


def _row(
    i: int,
    names: list[str],
    values: list[list[float]],
    kinds: dict[str, tuple[str, float | None]],
    input_rms: float,
    forward: bool,
) -> dict[str, Any]:
    """Layer ``i``'s row in the history's columns, figured as :func:`preflight.torch.propagation` figures it."""
    name, v = names[i], values[i]
    delta, _, weight_grad, weight_norm, update = v[:5]
    hidden = i < len(names) - 1
    kind = kinds.get(name, ("none", None))[0]
    activation = _NAMES.get(kind, "relu") if hidden else "logits"
    row: dict[str, Any] = {"layer": i + 1, "name": name, "activation": activation}
    measured = [x for x in v[:5] if x != MISSING]
    nonfinite = not all(math.isfinite(x) for x in measured)
    if forward:
        f = dict(zip(_FORWARD, v[5:], strict=True))
        transformed = hidden and kind in _TORCH
        n = f["count"]
        mean, second = (f["sum_a"] / n, f["sum_a2"] / n) if transformed else (f["sum_z"] / n, f["sum_z2"] / n)
        pre_rms = math.sqrt(f["sum_z2"] / n)
        last_delta = values[-1][0]
        # dL/dA_l is the gradient reaching the next layer's input (dL/dZ_L for the output layer).
        activation_grad = values[i + 1][1] if hidden else delta
        row.update(
            mean=mean,
            std=math.sqrt(max(second - mean * mean, 0.0)),
            pre_rms=pre_rms,
            saturated_fraction=None if math.isnan(f["saturated"]) or not hidden else f["saturated"] / n,
            dead_fraction=f["dead"] / f["units"] if hidden and activation == "relu" else None,
            delta_norm=_given(delta),
            activation_grad_norm=_given(activation_grad),
            forward_ratio=None if input_rms == MISSING else ratio(pre_rms, input_rms),
            backward_ratio=None if MISSING in (delta, last_delta) else ratio(delta, last_delta),
        )
        nonfinite = nonfinite or not math.isfinite(f["sum_z"])
    row.update(
        weight_grad_norm=_given(weight_grad),
        weight_norm=_given(weight_norm),
        update_ratio=None if MISSING in (update, weight_norm) else ratio(update, weight_norm),
        nonfinite=nonfinite,
    )
    return row


def locate_nonfinite(
    model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], numbers: dict[str, int]
) -> tuple[str, tuple[int, ...]]:
    """Run ``model`` once more on the same input (no gradients, random generators and buffers restored after) and
    name the first module where a NaN or infinity appears: its parameters, or its output from finite inputs.

    ``numbers`` gives the layer number of each Linear/Conv by name. Returns the place in words and its layer number
    (empty when it is not a numbered layer).
    """
    if not all_finite(args) or not all_finite(kwargs):
        return "the model's input", ()
    names = {id(module): name for name, module in model.named_modules()}
    found: list[tuple[str, str]] = []

    def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if found:
            return
        bad = [n for n, p in module.named_parameters(recurse=False) if not all_finite(p.detach())]
        if bad:
            found.append((names[id(module)], f"parameters ({', '.join(bad)})"))
        elif not all_finite(output):
            found.append((names[id(module)], "activations"))

    # Children finish before their parent: the first module whose output is non-finite made it (a parent's own
    # functional code included).
    handles = [module.register_forward_hook(hook) for module in model.modules()]
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name in buffers:
                    buffer.copy_(buffers[name])
    if not found:
        return "the loss or the backward pass (the forward pass is finite on a second run)", ()
    name, what = found[0]
    module = dict(model.named_modules())[name]
    label = f"{name or 'the model'}: {type(module).__name__}"
    if name in numbers:
        return f"layer {numbers[name]} ({label}) {what}", (numbers[name],)
    return f"{label} {what}", ()
