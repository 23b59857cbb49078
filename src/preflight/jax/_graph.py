"""A model's layers, read from its jaxpr: which weight feeds which product, the fans that product gives it, the
bias added after it, the activation that follows; and an evaluator that records or nudges chosen values.

A "layer" is a ``dot_general`` or ``conv_general_dilated`` of the top-level jaxpr with a weight leaf (possibly
reshaped or transposed) as one operand. Its fans come from the product itself: the weight's contracted dimensions
are its inputs, the others its outputs (a Flax ``kernel`` (in, out) and an Equinox ``weight`` (out, in) both come
out right). Its output ``z`` is the product plus the bias added right after it, if any.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
from jax.extend import core as jex_core

__all__ = ["RELU_LIKE", "Layer", "Traced", "trace"]

#: Operations that pass a weight (or a bias) on by layout only.
LAYOUT = frozenset({"reshape", "transpose", "convert_element_type", "copy", "copy_p", "broadcast_in_dim"})
#: Activations by the primitive (or the name of the custom_jvp / jit call) that computes them, as preflight names
#: (keys of preflight.propagation.mean_field.PHI; the rest read as ReLU). A hint only: the values decide
#: (:mod:`preflight.jax._activation`).
ACTIVATIONS = {"tanh": "tanh", "logistic": "sigmoid", "relu": "relu", "relu6": "relu", "silu": "silu",
               "gelu": "gelu", "elu": "elu", "celu": "elu", "selu": "relu", "softplus": "softplus",
               "leaky_relu": "leaky_relu", "sigmoid": "sigmoid", "swish": "silu", "mish": "relu"}  # fmt: skip
#: Those that pass large inputs on and squash negative ones: He's initialization fits them.
RELU_LIKE = frozenset({"relu", "leaky_relu", "gelu", "silu", "elu", "softplus"})


@dataclass(frozen=True)
class Layer:
    """One product with a weight leaf: its fans, output variable, bias leaf and the activation after it."""

    weight: int  # leaf position
    eqn: int
    fan_in: int
    fan_out: int
    matrix: tuple[tuple[int, ...], tuple[int, ...]]  # the weight's (output dims, input dims) in its own layout
    z: Any  # the jaxpr variable of the output (after the bias)
    x: Any  # the jaxpr variable of the layer's input (the other operand), or None
    bias: int | None
    activation: str
    a: Any  # the jaxpr variable after the activation (z itself when none)


@dataclass(frozen=True)
class Traced:
    """The closed jaxpr of ``fn(leaves, *batch)`` flattened, and its layers in execution order."""

    closed: Any
    n_leaves: int
    layers: tuple[Layer, ...]
    treedef: Any
    #: For each input of ``closed``: the position of its value among the flat arguments of ``run``, or a literal.
    feeds: tuple[Any, ...] = ()

    def run(self, args: Sequence[Any], *, add: dict[Any, Any] | None = None, record: Sequence[Any] = ()) -> Any:
        """Evaluate with ``add[var]`` added to ``var`` as it is computed; returns (outputs, recorded values)."""
        add = add or {}
        env: dict[Any, Any] = {}
        jaxpr = self.closed.jaxpr

        def read(v: Any) -> Any:
            return v.val if isinstance(v, jex_core.Literal) else env[v]

        for var, value in zip(jaxpr.constvars, self.closed.consts, strict=True):
            env[var] = value
        inner = [args[f] if isinstance(f, int) else f.val for f in self.feeds] if self.feeds else args
        for var, value in zip(jaxpr.invars, inner, strict=True):
            env[var] = value
        for eqn in jaxpr.eqns:
            params = eqn.primitive.get_bind_params(eqn.params)  # custom_vjp/jvp rules kept for the gradient
            out = eqn.primitive.bind(*map(read, eqn.invars), **params)
            outs = out if eqn.primitive.multiple_results else [out]
            for var, value in zip(eqn.outvars, outs, strict=True):
                if not isinstance(var, jex_core.DropVar):
                    env[var] = value + add[var] if var in add else value
        recorded = {v: env[v] for v in record}
        return [read(v) for v in jaxpr.outvars], recorded


def trace(fn: Callable[..., Any], leaves: Sequence[Any], batch: tuple[Any, ...]) -> Traced:
    """The jaxpr of ``fn(leaves, *batch)`` with leaves first among its inputs, and the layers found in it."""
    flat, treedef = jax.tree_util.tree_flatten((list(leaves), batch))

    def of_flat(*args: Any) -> Any:
        leaves_, batch_ = jax.tree_util.tree_unflatten(treedef, list(args))
        return fn(leaves_, *batch_)

    closed = jax.make_jaxpr(of_flat)(*flat)
    feeds: list[Any] = list(range(len(flat)))
    while len(closed.jaxpr.eqns) == 1 and _called(closed.jaxpr.eqns[0]) not in ACTIVATIONS:
        # A model jitted as a whole (jax.jit(model.apply)) is one call: its layers are inside, so is the run.
        (eqn,) = closed.jaxpr.eqns
        sub = eqn.params.get("jaxpr") if eqn.primitive.name in ("jit", "pjit") else None
        if sub is None or list(eqn.outvars) != list(closed.jaxpr.outvars) or closed.jaxpr.constvars:
            break
        position = {v: feeds[i] for i, v in enumerate(closed.jaxpr.invars)}
        feeds = [v if isinstance(v, jex_core.Literal) else position[v] for v in eqn.invars]
        closed = sub
    leaf_of = {v: f for v, f in zip(closed.jaxpr.invars, feeds, strict=True) if isinstance(f, int) and f < len(leaves)}
    layers = tuple(_layers(closed.jaxpr, leaf_of))
    return Traced(closed, len(leaves), layers, treedef, tuple(feeds))


def _consumers(jaxpr: Any) -> dict[Any, list[tuple[int, Any]]]:
    found: dict[Any, list[tuple[int, Any]]] = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            if not isinstance(v, jex_core.Literal):
                found.setdefault(v, []).append((i, eqn))
    return found


def _layers(jaxpr: Any, leaf_of: dict[Any, int]) -> list[Layer]:
    origin: dict[Any, int] = dict(leaf_of)
    users = _consumers(jaxpr)
    for eqn in jaxpr.eqns:
        ins = [v for v in eqn.invars if not isinstance(v, jex_core.Literal)]
        if eqn.primitive.name in LAYOUT and ins and ins[0] in origin:
            for out in eqn.outvars:
                origin[out] = origin[ins[0]]
    layers = []
    for i, eqn in enumerate(jaxpr.eqns):
        name = eqn.primitive.name
        if name not in ("dot_general", "conv_general_dilated") or len(eqn.invars) != 2:
            continue
        lhs, rhs = eqn.invars
        side = 1 if rhs in origin else 0 if lhs in origin else None
        if side is None:
            continue
        weight_var = eqn.invars[side]
        shape = tuple(weight_var.aval.shape)
        if name == "dot_general":
            (contract_l, contract_r), (batch_l, _) = eqn.params["dimension_numbers"]
            if batch_l:
                continue
            inputs = tuple(contract_r if side == 1 else contract_l)
            outputs = tuple(d for d in range(len(shape)) if d not in inputs)
            fan_in = math.prod(shape[d] for d in inputs)
            fan_out = math.prod(shape[d] for d in outputs)
        else:
            if side != 1:
                continue
            out_dim, in_dim, *spatial = eqn.params["dimension_numbers"].rhs_spec
            receptive = math.prod(shape[d] for d in spatial)
            inputs, outputs = (in_dim, *spatial), (out_dim,)
            fan_in, fan_out = shape[in_dim] * receptive, shape[out_dim] * receptive
        z, bias = _after_bias(eqn.outvars[0], users, origin)
        activation, a = _activation(z, users)
        layers.append(Layer(origin[weight_var], i, fan_in, fan_out, (outputs, inputs), z, eqn.invars[1 - side],
                            bias, activation, a))  # fmt: skip
    return layers


def _after_bias(z: Any, users: dict[Any, list[tuple[int, Any]]], origin: dict[Any, int]) -> tuple[Any, int | None]:
    """The product's output after the transposes and the one bias added to it (Flax, Equinox, plain ``+ b``)."""
    while len(users.get(z, [])) == 1 and users[z][0][1].primitive.name == "transpose":
        z = users[z][0][1].outvars[0]
    for _, eqn in users.get(z, []):
        if eqn.primitive.name == "add":
            other = next(v for v in eqn.invars if v is not z)
            leaf = _leaf_through(other, origin)
            if leaf is not None:
                return eqn.outvars[0], leaf
    return z, None


def _leaf_through(v: Any, origin: dict[Any, int]) -> int | None:
    return origin.get(v)


def _activation(z: Any, users: dict[Any, list[tuple[int, Any]]]) -> tuple[str, Any]:
    """The activation applied to z (its only consumer, or GELU's cubic), and its output; ("none", z) if none."""
    after = users.get(z, [])
    for _, eqn in after:
        name = eqn.primitive.name
        called = _called(eqn)
        if called in ACTIVATIONS:
            return ACTIVATIONS[called], eqn.outvars[0]
        if name == "max" and any(isinstance(v, jex_core.Literal) and float(v.val) == 0.0 for v in eqn.invars):
            return "relu", eqn.outvars[0]
        if name == "integer_pow" and eqn.params.get("y") == 3:
            return "gelu", None  # GELU's tanh form, inlined (jax.nn.gelu): its output is the next layer's input
    if _reaches(z, users, {"erf", "erfc"}, steps=3):
        return "gelu", None  # GELU's erf form (approximate=False), inlined
    return "none", z


def _reaches(v: Any, users: dict[Any, list[tuple[int, Any]]], names: set[str], steps: int) -> bool:
    """Whether a primitive in ``names`` consumes ``v`` within ``steps`` equations."""
    frontier = [v]
    for _ in range(steps):
        eqns = [eqn for u in frontier for _, eqn in users.get(u, [])]
        if any(eqn.primitive.name in names for eqn in eqns):
            return True
        frontier = [out for eqn in eqns for out in eqn.outvars]
    return False


def _called(eqn: Any) -> str:
    """The name of what an equation computes: a jit's name, a custom_jvp/vjp rule's function (jax.nn.relu is a
    custom_jvp around a jit named relu), or the primitive's name."""
    name = eqn.primitive.name
    if name in ("jit", "pjit") and "name" in eqn.params:
        return str(eqn.params["name"])
    inner = eqn.params.get("call_jaxpr")
    if name.startswith("custom_") and inner is not None:
        jaxpr = getattr(inner, "jaxpr", inner)
        func = getattr(getattr(jaxpr, "debug_info", None), "func_name", "") or ""
        if func.split(".")[-1] in ACTIVATIONS:
            return func.split(".")[-1]
        if len(jaxpr.eqns) == 1:
            return _called(jaxpr.eqns[0])
    return str(name)
