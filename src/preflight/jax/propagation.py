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

from preflight import propagation as core
from preflight._util.validation import check_in_range, describe
from preflight.jax._graph import trace
from preflight.jax._pytree import split
from preflight.jax.initialize import inputs_of
from preflight.propagation.layers import LayerRecord, layer_stats

__all__ = ["propagation"]

#: preflight's activation names (those the mean-field recursion knows) for what the jaxpr shows.
NAMES = {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid", "none": "linear"}


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
    record = [*(layer.z for layer in layers), *(layer.a for layer in layers if layer.a is not None)]

    def loss(values: list[Any], probes: list[Any]) -> Any:
        (out, *rest), _ = traced.run(values + flat_inputs, add=dict(zip(probed, probes, strict=True)))
        if loss_fn is not None and target is not None:
            value = loss_fn(out if not rest else (out, *rest), target)
            if jnp.shape(value) != ():
                raise ValueError(f"loss_fn: expected a scalar, got an array of shape {jnp.shape(value)}")
            return value
        upstream = jax.random.normal(jax.random.key(seed), out.shape, out.dtype)
        return jnp.sum(out * upstream) / out.shape[0]

    probes = [jnp.zeros(v.aval.shape, v.aval.dtype) for v in probed]
    grads, probe_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(leaves, probes)
    values = jax.jit(lambda v: [traced.run(v + flat_inputs, record=record)[1][r] for r in record])(leaves)
    seen = dict(zip(record, values, strict=True))

    def grad_norm(v: Any) -> float:
        return float(np.linalg.norm(np.asarray(probe_grads[probed.index(v)], dtype=np.float64)))

    records = []
    for i, layer in enumerate(layers):
        hidden = i < len(layers) - 1
        z = np.asarray(seen[layer.z], dtype=np.float64)
        a = z if not hidden or layer.a is None else np.asarray(seen[layer.a], dtype=np.float64)
        records.append(LayerRecord(
            NAMES.get(layer.activation, "relu"), z, a, tree.arrays[layer.weight].astype(np.float64), layer.fan_in,
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
