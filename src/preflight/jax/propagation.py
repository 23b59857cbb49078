"""Signal propagation through a JAX model: the NumPy diagnostics' per-layer report, measured on its jaxpr.

The layers are the products with a weight found by :mod:`preflight.jax._graph` (Flax linen and nnx, Equinox, plain
functions alike). One evaluation of the jaxpr records each layer's output ``Z_l`` (after its bias), the activation
after it and its input; zero "probes" added to ``Z_l`` and to each layer's input give ``dL/dZ_l`` and ``dL/dA_{l-1}``
from the same backward pass as ``dL/dW_l``. Statistics, mean-field figures and verdicts are
:func:`preflight.propagation.layer_stats`', as for the NumPy network and torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import NDArray

from preflight import propagation as core
from preflight._util.validation import check_in_range, describe
from preflight.jax._activation import identify
from preflight.jax._graph import Layer, trace
from preflight.jax._pytree import split
from preflight.jax.initialize import inputs_of
from preflight.propagation.layers import MEAN_FIELD_ACTIVATIONS, LayerRecord, layer_stats

#: The jaxpr's word for a layer without an activation call, in preflight's.
HINTS = {"none": "linear"}

__all__ = ["propagation"]


def propagation(
    apply_fn: Callable[..., Any],
    params: Any,
    batch: Any,
    loss_fn: Callable[..., Any] | None = None,
    *,
    learning_rate: float = 0.01,
    thresholds: core.Thresholds | None = None,
    warn: bool = True,
    seed: int = 0,
) -> core.PropagationReport:
    """Per-layer forward and backward statistics of ``apply_fn(params, inputs)`` on ``batch``, with verdicts.

    Parameters
    ----------
    apply_fn : callable
        ``apply_fn(params, inputs) -> outputs`` (``model.apply`` for Flax linen; ``lambda m, x: jax.vmap(m)(x)``
        for an Equinox model).
    params : pytree
        Flax variables, an Equinox module, an ``nnx.State``, any pytree; not modified.
    batch : array or (inputs, target)
    loss_fn : callable, optional
        ``loss_fn(outputs, target) -> scalar``. Without it (or without a target) the backward pass starts from a
        random unit-variance gradient of the output, divided by the batch size.
    learning_rate, thresholds, warn
        As in :func:`preflight.propagation.analyze`.

    Returns
    -------
    preflight.propagation.PropagationReport

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> keys = jax.random.split(jax.random.key(0), 11)
    >>> params = [{"w": 0.01 * jax.random.normal(k, (64, 64)), "b": jnp.zeros(64)} for k in keys]
    >>> def apply(params, x):
    ...     for layer in params[:-1]:
    ...         x = jax.nn.relu(x @ layer["w"] + layer["b"])
    ...     return x @ params[-1]["w"] + params[-1]["b"]
    >>> propagation(apply, params, jax.random.normal(keys[0], (128, 64)), warn=False).verdict
    'vanishing'
    """
    learning_rate = check_in_range(learning_rate, name="learning_rate", low=0.0, high=math.inf, low_open=True)
    thresholds = core.check_thresholds(thresholds)
    if not callable(apply_fn):
        raise ValueError(f"apply_fn: expected a callable apply_fn(params, inputs), got {describe(apply_fn)}")
    inputs = inputs_of(batch)
    target = batch[1] if isinstance(batch, (tuple, list)) else None
    tree = split(params, "params")
    leaves = [jnp.asarray(a) for a in tree.arrays]
    traced = trace(tree.bind(apply_fn), leaves, inputs)
    if not traced.layers:
        raise ValueError("apply_fn: no product (dot_general or convolution) with a weight of params found in it")
    flat_inputs = list(jax.tree_util.tree_leaves(inputs))
    layers = traced.layers
    # One probe per distinct variable: a layer's input is often the previous layer's output (no activation).
    probed = list(dict.fromkeys([layer.z for layer in layers] + [layer.x for layer in layers[1:]]))
    # Each hidden layer's activation is told by its values: z against the next layer's input (what the layer
    # passes on), or the output of the call the jaxpr names (an activation before a reshape or a pooling).
    record = list(dict.fromkeys([*(layer.z for layer in layers), *(layer.x for layer in layers[1:]),
                                 *(layer.a for layer in layers if layer.a is not None)]))  # fmt: skip

    def loss(values: list[Any], probes: list[Any]) -> Any:
        (out, *rest), seen = traced.run(values + flat_inputs, add=dict(zip(probed, probes, strict=True)), record=record)
        recorded = [seen[v] for v in record]  # the probes are zeros: the values are the model's own
        if loss_fn is not None and target is not None:
            value = loss_fn(out if not rest else (out, *rest), target)
            if jnp.shape(value) != ():
                raise ValueError(f"loss_fn: expected a scalar, got an array of shape {jnp.shape(value)}")
            return value, recorded
        upstream = jax.random.normal(jax.random.key(seed), out.shape, out.dtype)
        return jnp.sum(out * upstream) / out.shape[0], recorded

    probes = [jnp.zeros(v.aval.shape, v.aval.dtype) for v in probed]
    # One compiled program for the forward values and every gradient.
    (grads, probe_grads), values = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))(leaves, probes)
    seen = dict(zip(record, values, strict=True))

    def grad_norm(v: Any) -> float:
        return float(np.linalg.norm(np.asarray(probe_grads[probed.index(v)], dtype=np.float64)))

    records = []
    for i, layer in enumerate(layers):
        z = np.asarray(seen[layer.z], dtype=np.float64)
        name, a = ("linear", z) if i == len(layers) - 1 else _activation(layer, layers[i + 1].x, z, seen)
        records.append(LayerRecord(
            name, z, a, tree.arrays[layer.weight].astype(np.float64), layer.fan_in,
            np.asarray(grads[layer.weight], dtype=np.float64), grad_norm(layer.z),
            grad_norm(layer.x) if i > 0 else math.nan,
        ))  # fmt: skip
    stats = layer_stats(records, float(np.sqrt(np.mean(np.square(np.asarray(inputs[0], np.float64))))),
                        learning_rate, thresholds)  # fmt: skip
    report = core.PropagationReport(
        tuple(stats), core.overall_verdict(stats), core.recommend_for([s.activation for s in stats[:-1]]),
        learning_rate, thresholds,
    )  # fmt: skip
    if warn:
        report.warn()
    return report


def _activation(layer: Layer, passed_on: Any, z: NDArray[np.float64], seen: dict[Any, Any]) -> tuple[str, Any]:
    """The hidden layer's activation name and output: the first candidate output that a known activation of z
    explains, tried with the jaxpr's name first; failing that, the jaxpr's name (ReLU-like when unknown to the
    mean field) and the output of its call, or z itself."""
    hint = HINTS.get(layer.activation, layer.activation)
    for var in (passed_on, layer.a):
        if var is None:
            continue
        value = np.asarray(seen[var], dtype=np.float64)
        name = identify(z, value, hint)
        if name is not None:
            return name, value
    name = hint if hint in MEAN_FIELD_ACTIVATIONS else "relu"
    return name, z if layer.a is None else np.asarray(seen[layer.a], dtype=np.float64)
