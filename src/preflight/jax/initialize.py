"""Initialize the weights of a JAX model (Flax, Equinox, any params pytree) with preflight's schemes, or LSUV.

With ``apply_fn`` and ``batch`` the model is traced once (:mod:`preflight.jax._graph`): each weight's fans come from
the product it enters (a Flax ``kernel`` is (in, out), an Equinox ``weight`` (out, in): both come out right), its
bias is the leaf added after it, and ``scheme="auto"`` picks by the activation that follows (He after ReLU-like,
LeCun after tanh, sigmoid or none, as ``preflight.torch.initialize``). Without them, weights are read from the names:
a leaf of 2 or more dimensions whose name ends in ``kernel`` is laid out (..., in, out), any other (out, in, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from numpy.typing import NDArray

from preflight._util.aliases import RngLike
from preflight._util.validation import check_in_range, check_positive_int, describe
from preflight._util.warn import warn
from preflight.init import InitializationReport, LayerInit, LSUVWarning
from preflight.init import schemes as initializers
from preflight.jax._graph import RELU_LIKE, Layer, Traced, trace
from preflight.jax._pytree import Split, split

__all__ = ["initialize", "inputs_of"]

A = NDArray[Any]
SKIPPED_WHY = "no layer's weight or bias, left as they were"
SKIPPED_FIX = "initialize them yourself if they need it"


def inputs_of(batch: Any) -> tuple[Any, ...]:
    """The model's inputs in ``batch``: an array (the inputs), or ``(inputs, target)``."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return (batch[0],)
    if hasattr(batch, "shape"):
        return (batch,)
    raise ValueError(f"batch: expected an array of inputs or a pair (inputs, target), got {describe(batch)}")


def initialize(
    params: Any,
    scheme: str | initializers.Initializer = "auto",
    *,
    apply_fn: Callable[..., Any] | None = None,
    batch: Any = None,
    rng: RngLike = 0,
    tol: float = 0.1,
    max_iterations: int = 10,
) -> tuple[Any, InitializationReport]:
    """New params with every layer's weight drawn by ``scheme`` and its bias zero, and what was chosen.

    Parameters
    ----------
    params : pytree
        Flax ``variables`` (or an ``nnx.State``), an Equinox module, any pytree; not modified (a new one is
        returned, leaves in their dtypes).
    scheme : "auto", "lsuv", a name of ``preflight.init.SCHEMES``, or an initializer
        "auto": by the activation after each layer (needs ``apply_fn`` and ``batch``; LeCun everywhere without
        them, with a note). "lsuv": orthogonal, then each layer's output rescaled to unit variance on ``batch``.
    apply_fn : callable, optional
        ``apply_fn(params, inputs) -> outputs`` (``model.apply`` for Flax linen; ``lambda m, x: jax.vmap(m)(x)``
        for Equinox).
    batch : array or (inputs, target), optional
        Inputs to trace ``apply_fn`` on (and, for "lsuv", to measure each layer's output on).
    rng : Generator, RandomState or int seed
    tol, max_iterations : float, int
        LSUV stops on a layer when ``|Var - 1| <= tol`` or after ``max_iterations`` rescalings (then warns).

    Returns
    -------
    (params, InitializationReport)

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> params = {"dense": {"kernel": jnp.zeros((64, 32)), "bias": jnp.ones(32)}}
    >>> new, report = initialize(params, "he")
    >>> round(float(new["dense"]["kernel"].var() * 64), 1), float(new["dense"]["bias"].sum())
    (2.0, 0.0)
    """
    tree = split(params, "params")
    arrays = [a.copy() for a in tree.arrays]
    generator = initializers.as_generator(rng)
    if (apply_fn is None) != (batch is None):
        raise ValueError("apply_fn, batch: pass both (to trace the model) or neither")
    traced = None
    if apply_fn is not None:
        traced = trace(tree.bind(apply_fn), [jnp.asarray(a) for a in arrays], inputs_of(batch))
        layers = list(traced.layers)
        how = "traced from the jaxpr"
        if not layers:
            raise ValueError("params: tracing apply_fn found no product (dot_general or convolution) with a weight")
    else:
        layers = _by_names(tree)
        how = "unknown (no apply_fn and batch given: weights found by name)"
        if not layers:
            raise ValueError("params: no leaf with 2 or more dimensions to initialize as a weight")
    if scheme == "lsuv":
        if traced is None:
            raise ValueError("batch: scheme='lsuv' needs apply_fn and a batch of inputs to measure each layer on")
        records = _lsuv(traced, tree, arrays, inputs_of(batch), generator, tol, max_iterations)
    else:
        records = []
        done: set[int] = set()
        for layer in layers:
            label, init = _choice(scheme, layer.activation)
            if layer.weight not in done:
                _draw(arrays, layer, init, generator)
                done.add(layer.weight)
                if layer.bias is not None:
                    arrays[layer.bias][...] = 0
            else:
                label = "kept (tied: drawn at its first use)"
            records.append(_record(tree, arrays, layer, label))
    touched = {r.weight for r in layers} | {r.bias for r in layers if r.bias is not None}
    skipped = tuple(n for k, n in enumerate(tree.names) if k not in touched)
    name = scheme if isinstance(scheme, str) else getattr(scheme, "__name__", "custom")
    report = InitializationReport(name, how, tuple(records), skipped, SKIPPED_WHY, SKIPPED_FIX)
    return tree.rebuild([jnp.asarray(a) for a in arrays]), report


def _by_names(tree: Split) -> list[Layer]:
    """Weights and biases read from names: ``...kernel`` is (..., in, out), any other weight (out, in, ...)."""
    layers = []
    for k, (name, a) in enumerate(zip(tree.names, tree.arrays, strict=True)):
        if a.ndim < 2:
            continue
        if name.rstrip("']").endswith("kernel"):
            outputs, inputs = (a.ndim - 1,), tuple(range(a.ndim - 1))
        else:
            outputs, inputs = (0,), tuple(range(1, a.ndim))
        head, found, tail = name.rpartition("kernel" if "kernel" in name else "weight")
        bias_name = head + "bias" + tail if found else name
        bias = tree.names.index(bias_name) if bias_name in tree.names and bias_name != name else None
        fan_in, fan_out = math.prod(a.shape[d] for d in inputs), a.shape[outputs[0]]
        receptive = math.prod(a.shape[d] for d in inputs[:-1]) if name.rstrip("']").endswith("kernel") else (
            math.prod(a.shape[2:]))  # fmt: skip
        layers.append(Layer(k, -1, fan_in, fan_out * receptive, (outputs, inputs), None, None, bias, "none", None))
    return layers


def _choice(scheme: Any, activation: str) -> tuple[str, initializers.Initializer]:
    if scheme != "auto":
        label = scheme if isinstance(scheme, str) else getattr(scheme, "__name__", "custom")
        return label, initializers.get(scheme)
    if activation in RELU_LIKE:
        return "he (gain sqrt 2)", initializers.variance_scaling(2.0, "fan_in", "normal")
    return "lecun", initializers.lecun_normal


def _draw(arrays: list[A], layer: Layer, init: initializers.Initializer, generator: Any) -> None:
    """Draw in preflight's layout, (fan_out, fan_in), then lay the values out as the weight is."""
    a = arrays[layer.weight]
    outputs, inputs = layer.matrix
    order = (*outputs, *inputs)
    # preflight's initializers read the fans from a (out, in, *kernel) shape: one with the layer's fans and the
    # weight's size is (fan_out / r, fan_in / r, r), r the receptive field (1 for a dense weight).
    r = layer.fan_in * layer.fan_out // a.size
    shape = (layer.fan_out // r, layer.fan_in // r, r) if r > 1 else (layer.fan_out, layer.fan_in)
    drawn = init(generator, shape, np.float64)
    values = drawn.reshape(tuple(a.shape[d] for d in order)).transpose(np.argsort(order))
    arrays[layer.weight][...] = values.astype(a.dtype)


def _record(tree: Split, arrays: list[A], layer: Layer, label: str, **lsuv: Any) -> LayerInit:
    a = arrays[layer.weight]
    return LayerInit(tree.names[layer.weight], tuple(a.shape), layer.activation, label,
                     float(np.std(a, dtype=np.float64)), **lsuv)  # fmt: skip


def _lsuv(
    traced: Traced, tree: Split, arrays: list[A], inputs: tuple[Any, ...], generator: Any, tol: float, limit: int
) -> list[LayerInit]:
    tol = check_in_range(tol, name="tol", low=0.0, high=1.0, low_open=True, high_open=True)
    limit = check_positive_int(limit, name="max_iterations")
    orthogonal = initializers.orthogonal(1.0)
    for layer in traced.layers:
        _draw(arrays, layer, orthogonal, generator)
        if layer.bias is not None:
            arrays[layer.bias][...] = 0
    flat_inputs = jax_leaves(inputs)

    def variance(layer: Layer) -> float:
        _, seen = traced.run([jnp.asarray(a) for a in arrays] + flat_inputs, record=[layer.z])
        return float(np.var(np.asarray(seen[layer.z], dtype=np.float64)))

    records = []
    for layer in traced.layers:
        first = v = variance(layer)
        iterations = 0
        while abs(v - 1.0) > tol and iterations < limit and v > 1e-12:
            arrays[layer.weight][...] = (arrays[layer.weight] / math.sqrt(v)).astype(arrays[layer.weight].dtype)
            v = variance(layer)
            iterations += 1
        if abs(v - 1.0) > tol:
            warn(f"LSUV: layer {tree.names[layer.weight]} ended with output variance {v:.3g}", LSUVWarning)
        records.append(_record(tree, arrays, layer, "orthogonal + rescale", variance_before=first,
                               variance_after=v, iterations=iterations))  # fmt: skip
    return records


def jax_leaves(inputs: tuple[Any, ...]) -> list[Any]:
    import jax

    return list(jax.tree_util.tree_leaves(inputs))
