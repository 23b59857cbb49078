"""Perturbed losses of one leaf, evaluated on the loss's jaxpr with the perturbations kept sparse where they can be.

The engine asks for ``K`` losses, each with one element of a leaf moved. Re-running the whole loss ``K`` times
(vmapped) costs ``K`` full forward passes; most of that work does not depend on the moved element. The jaxpr of the
loss is evaluated once per chunk of ``K`` with each value in one of four forms:

- known: the unperturbed value (one array, computed once for the chunk);
- point: a leaf with element ``idx[r]`` set to ``new[r]``;
- slice: an array whose slice ``idx[r]`` along one axis holds ``vals[r]``, the rest unperturbed (a weight
  ``W[i, j]`` moves column ``j`` of ``x @ W`` by ``d x[:, i]``; a bias entry moves one column; elementwise
  functions keep the change in that column);
- dense: ``K`` full arrays (vmapped evaluation).

A matrix product of a point or a slice with a known operand is a rank-one update: ``O(output)`` per perturbation
instead of a product. Everything without a rule is densified and vmapped, so any loss evaluates, only slower.
Calls (``jit``, ``custom_jvp_call``, ``custom_vjp_call``) are entered: their primal is what the loss computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend import core as jex_core

__all__ = ["structured_losses"]

#: Primitives that act element by element (with size-1 broadcasting): a change confined to a slice stays there.
ELEMENTWISE = frozenset(
    "add sub mul div neg max min tanh logistic exp exp2 log log1p expm1 sin cos tan sqrt rsqrt cbrt abs sign "
    "integer_pow pow square select_n convert_element_type erf erfc erf_inv atan2 asinh acosh atanh sinh cosh "
    "asin acos atan stop_gradient copy copy_p nextafter rem floor ceil round is_finite clamp "
    "reduce_precision real imag conj not and or xor eq ne lt le gt ge".split()
)
#: Primitives that hold a sub-jaxpr to enter, by the name of the parameter that holds it.
CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
         "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr",
         "remat": "jaxpr", "checkpoint": "jaxpr"}  # fmt: skip


@dataclass(frozen=True)
class Point:
    """A leaf with its flat element ``idx[r]`` set to ``new[r]`` (r over the chunk)."""

    base: Any
    idx: Any
    new: Any


@dataclass(frozen=True)
class Slice:
    """``base`` with its slice ``idx[r]`` along ``axis`` replaced by ``vals[r]`` (``vals``: (K, *base without axis))."""

    base: Any
    axis: int
    idx: Any
    vals: Any


@dataclass(frozen=True)
class Dense:
    """``K`` full arrays, stacked on a leading axis."""

    value: Any


def structured_losses(of_leaves: Callable[..., Any], k: int) -> Callable[..., Any]:
    """``(leaves, indices, values, *batch) -> losses``: leaf k's element ``indices[r]`` set to ``values[r]``."""

    def losses(leaves: list[Any], indices: Any, values: Any, *batch: Any) -> Any:
        flat, tree = jax.tree_util.tree_flatten((leaves, batch))

        def of_flat(*args: Any) -> Any:
            leaves_, batch_ = jax.tree_util.tree_unflatten(tree, list(args))
            return of_leaves(leaves_, *batch_)

        closed = jax.make_jaxpr(of_flat)(*flat)
        inputs: list[Any] = list(flat)
        inputs[k] = Point(flat[k], indices, values)
        (out,) = _run(closed.jaxpr, closed.consts, inputs, indices.shape[0])
        return _dense(out, indices.shape[0]).reshape(indices.shape[0])

    return losses


def _run(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any], count: int) -> list[Any]:
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jex_core.Literal) else env[v]

    for var, value in zip(jaxpr.constvars, consts, strict=True):
        env[var] = value
    for var, value in zip(jaxpr.invars, args, strict=True):
        env[var] = value
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        outs = _apply(eqn, ins, count)
        for var, value in zip(eqn.outvars, outs, strict=True):
            if not isinstance(var, jex_core.DropVar):
                env[var] = value
    return [read(v) for v in jaxpr.outvars]


def _known(x: Any) -> bool:
    return not isinstance(x, (Point, Slice, Dense))


def _apply(eqn: Any, ins: list[Any], count: int) -> list[Any]:
    p, params = eqn.primitive, eqn.params
    name = p.name
    if name in CALLS and CALLS[name] in params:
        # Entered even when every input is known: a custom_vjp_call cannot be bound again outside its own tracing.
        sub = params[CALLS[name]]
        inner, consts = (sub.jaxpr, sub.consts) if hasattr(sub, "consts") else (sub, ())
        return _run(inner, consts, ins, count)
    if all(_known(x) for x in ins):
        out = p.bind(*ins, **params)
        return list(out) if p.multiple_results else [out]
    shape = tuple(eqn.outvars[0].aval.shape)
    if name in ELEMENTWISE and not p.multiple_results:
        out = _elementwise(p, params, ins, shape)
        if out is not None:
            return [out]
    if name == "dot_general":
        out = _dot(p, params, ins)
        if out is not None:
            return [out]
    if name == "reshape" and isinstance(ins[0], Point) and ins[0].base.ndim == 1:
        # A bias reshaped to (1, n) (Flax): one slice along the axis that keeps its n entries.
        dims = [d for d, size in enumerate(shape) if size != 1]
        if len(dims) == 1 and shape[dims[0]] == ins[0].base.size:
            params = {"shape": shape, "broadcast_dimensions": (dims[0],), "sharding": None}
    if name in ("broadcast_in_dim", "reshape") and "broadcast_dimensions" in params:
        out = _broadcast(params, ins[0])
        if out is not None:
            return [out]
    if name == "transpose" and isinstance(ins[0], Slice):
        perm = tuple(params["permutation"])
        s = ins[0]
        rest = [a for a in perm if a != s.axis]
        order = [0] + [1 + (a if a < s.axis else a - 1) for a in rest]
        return [Slice(lax.transpose(s.base, perm), perm.index(s.axis), s.idx, jnp.transpose(s.vals, order))]
    return _vmapped(p, params, ins, count)


def _vmapped(p: Any, params: dict[str, Any], ins: list[Any], count: int) -> list[Any]:
    axes = [None if _known(x) else 0 for x in ins]
    dense = [x if _known(x) else _dense(x, count) for x in ins]
    out = jax.vmap(partial(p.bind, **params), in_axes=axes)(*dense)
    return [Dense(o) for o in out] if p.multiple_results else [Dense(out)]


def _dense(x: Any, count: int) -> Any:
    """``K`` full arrays from any form."""
    if isinstance(x, Dense):
        return x.value
    if isinstance(x, Point):
        size = x.base.size
        flat = jnp.broadcast_to(x.base.reshape(-1), (count, size))
        return flat.at[jnp.arange(count), x.idx].set(x.new.astype(x.base.dtype)).reshape((count, *x.base.shape))
    if isinstance(x, Slice):
        moved = jnp.broadcast_to(jnp.moveaxis(x.base, x.axis, 0), (count, *_moved_shape(x.base.shape, x.axis)))
        moved = moved.at[jnp.arange(count), x.idx].set(x.vals.astype(x.base.dtype))
        return jnp.moveaxis(moved, 1, x.axis + 1)
    return jnp.broadcast_to(x, (count, *jnp.shape(x)))


def _moved_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return (shape[axis], *shape[:axis], *shape[axis + 1 :])


def _base(x: Any) -> Any:
    return x.base if isinstance(x, (Point, Slice)) else x


def _slice_of(x: Any, axis: int, idx: Any, rest_shape: tuple[int, ...]) -> Any:
    """The slice ``idx[r]`` along ``axis`` of a known operand, as (K, *rest) (size-1 axes broadcast)."""
    x = jnp.asarray(x)
    if x.ndim == 0:
        return x
    picked = jnp.take(x, idx if x.shape[axis] > 1 else jnp.zeros_like(idx), axis=axis)
    return jnp.broadcast_to(jnp.moveaxis(picked, axis, 0), (idx.shape[0], *rest_shape))


def _elementwise(p: Any, params: dict[str, Any], ins: list[Any], shape: tuple[int, ...]) -> Any:
    moving = [x for x in ins if not _known(x)]
    if all(isinstance(x, Point) for x in moving):
        first = moving[0]
        if not all(x.idx is first.idx for x in moving) or any(
            jnp.ndim(_base(x)) and jnp.shape(_base(x)) != shape for x in ins
        ):
            return None
        picked = [x.new if isinstance(x, Point) else (x if jnp.ndim(x) == 0 else x.reshape(-1)[first.idx]) for x in ins]
        return Point(p.bind(*[_base(x) for x in ins], **params), first.idx, p.bind(*picked, **params))
    if not all(isinstance(x, Slice) for x in moving):
        return None
    first = moving[0]
    axis = first.axis
    if any(x.axis != axis or x.idx is not first.idx or x.base.shape[axis] != shape[axis] for x in moving):
        return None
    rest = shape[:axis] + shape[axis + 1 :]
    vals = [jnp.broadcast_to(x.vals, (x.vals.shape[0], *rest)) if isinstance(x, Slice)
            else _slice_of(x, axis, first.idx, rest) for x in ins]  # fmt: skip
    return Slice(p.bind(*[_base(x) for x in ins], **params), axis, first.idx, p.bind(*vals, **params))


def _broadcast(params: dict[str, Any], x: Any) -> Any:
    """A perturbed vector (a bias) broadcast into a matrix: one slice of it."""
    if not isinstance(x, Point) or x.base.ndim != 1:
        return None
    shape, dims = tuple(params["shape"]), tuple(params["broadcast_dimensions"])
    axis = dims[0]
    base = lax.broadcast_in_dim(x.base, shape, dims)
    rest = shape[:axis] + shape[axis + 1 :]
    vals = jnp.broadcast_to(x.new.astype(x.base.dtype).reshape((-1,) + (1,) * len(rest)), (x.new.shape[0], *rest))
    return Slice(base, axis, x.idx, vals)


def _dot(p: Any, params: dict[str, Any], ins: list[Any]) -> Any:
    """A product with one known operand: a rank-one update for a point or a contracted slice."""
    lhs, rhs = ins
    if not (_known(lhs) or _known(rhs)) or any(isinstance(x, Dense) for x in ins):
        return None
    (contract_l, contract_r), (batch_l, batch_r) = params["dimension_numbers"]
    moving_is_lhs = not _known(lhs)
    m, o = (lhs, rhs) if moving_is_lhs else (rhs, lhs)
    m_contract, o_contract = (contract_l, contract_r) if moving_is_lhs else (contract_r, contract_l)
    m_batch = batch_l if moving_is_lhs else batch_r
    if m_batch:
        return None
    out = p.bind(_base(lhs), _base(rhs), **params)
    m_free = [d for d in range(m.base.ndim) if d not in m_contract]
    o_free = [d for d in range(jnp.ndim(o)) if d not in o_contract]
    # Output axes: (lhs free..., rhs free...) (no batch dimensions here).
    first_m_axis = 0 if moving_is_lhs else len(o_free)
    if isinstance(m, Point):
        if len(m_free) > 1:
            return None
        coords = jnp.unravel_index(m.idx, m.base.shape)
        delta = (m.new.astype(m.base.dtype) - m.base.reshape(-1)[m.idx]).astype(out.dtype)
        # The other operand at the point's contracted coordinates: (K, *o_free).
        o_moved = jnp.moveaxis(jnp.asarray(o), list(o_contract), list(range(len(o_contract))))
        picked = o_moved[tuple(coords[d] for d in m_contract)].astype(out.dtype)
        change = delta.reshape((-1,) + (1,) * len(o_free)) * picked
        if not m_free:
            return Dense(out[None] + change)
        axis = first_m_axis
        free_coord = coords[m_free[0]]
        current = jnp.moveaxis(jnp.take(out, free_coord, axis=axis), axis, 0)
        return Slice(out, axis, free_coord, current + change)
    if not isinstance(m, Slice) or m.axis not in m_contract:
        return None
    # A slice along a contracted axis: out + (vals - base slice) (x) the other operand's matching slice.
    paired = o_contract[list(m_contract).index(m.axis)]
    rest_m = m.base.shape[: m.axis] + m.base.shape[m.axis + 1 :]
    diff = m.vals - _slice_of(m.base, m.axis, m.idx, rest_m)
    o_rest = jnp.shape(o)[:paired] + jnp.shape(o)[paired + 1 :]
    o_slice = _slice_of(o, paired, m.idx, o_rest)
    drop = partial(_drop_axis, removed_m=m.axis, removed_o=paired)
    new_contract_m = tuple(drop(d, m=True) for d in m_contract if d != m.axis)
    new_contract_o = tuple(drop(d, m=False) for d in o_contract if d != paired)
    numbers = (
        ((new_contract_m, new_contract_o), ((), ())) if moving_is_lhs else ((new_contract_o, new_contract_m), ((), ()))
    )
    one = partial(lax.dot_general, dimension_numbers=numbers, preferred_element_type=params["preferred_element_type"])
    pairs = (diff, o_slice) if moving_is_lhs else (o_slice, diff)
    change = jax.vmap(one)(*pairs)
    return Dense(out[None] + change.astype(out.dtype))


def _drop_axis(d: int, *, removed_m: int, removed_o: int, m: bool) -> int:
    removed = removed_m if m else removed_o
    return d - 1 if d > removed else d
