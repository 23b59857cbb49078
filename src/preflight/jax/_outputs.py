"""A JAX function's outputs as the Jacobian check needs them: flat rows, projections, noise, perturbed columns.

:class:`Outputs` wraps ``g(leaves) -> pytree`` (the function of its floating input leaves): the floating outputs
concatenated into one float64 vector ``y``, the rows ``P @ y`` checked (``P`` the identity, or random projections of
a large output), and the analytic rows by ``jax.vjp`` and ``jax.jvp``. It only evaluates: the rows' noise, the steps
and the blocks of moved evaluations per input leaf are those of every adapter's ``check_function``
(:func:`preflight.check.function_noise.probe_noise`, :func:`preflight.check.function_steps.build_block`), the
moved evaluations of a leaf vmapped, one jit per leaf.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import NDArray

from preflight.check import numdiff
from preflight.check.function_noise import default_steps, probe_noise
from preflight.check.function_steps import Block, build_block
from preflight.jax._pytree import Split

#: jnp.finfo (untyped in jax's stubs), which knows bfloat16 as NumPy does not.
_finfo: Any = jnp.finfo

__all__ = ["Outputs", "Stopped"]

A = NDArray[Any]
F64 = NDArray[np.float64]
#: Output projections checked when the output has more than ``max_outputs`` elements.
PROJECTIONS = 16
#: Perturbed outputs one vmapped call may hold (elements).
CHUNK_ELEMENTS = 1 << 22


class Stopped(Exception):
    """The check cannot go on (a random function, an output not finite): the message is the report's ``stopped``."""


class Outputs:
    def __init__(self, g: Callable[[list[Any]], Any], tree: Split, limit: int, seed: int) -> None:
        self.g, self.tree, self.seed = g, tree, seed
        self.notes: list[str] = []
        self.evaluations = 0
        self.base = [jax.device_put(a) for a in tree.arrays]
        shapes = jax.eval_shape(g, self.base)
        floats = [s for s in jax.tree_util.tree_leaves(shapes) if jnp.issubdtype(s.dtype, jnp.floating)]
        skipped = len(jax.tree_util.tree_leaves(shapes)) - len(floats)
        if skipped:
            self.notes.append(f"{skipped} output(s) not floating-point (integers, booleans): not checked")
        if not floats:
            raise ValueError("f: it returned no floating-point output to differentiate")
        self.shapes = [tuple(s.shape) for s in floats]
        m = sum(math.prod(shape) for shape in self.shapes)
        #: Jacobian entries: 0 for an empty input or output, which the check passes with nothing to check.
        self.entries = m * sum(a.size for a in tree.arrays)
        self.identity = m <= limit
        self.noise = 0.0
        if self.entries == 0:
            return
        self.output_epsilon = max(float(_finfo(s.dtype).eps) for s in floats)
        self.input_epsilon = max(numdiff.machine_epsilon(a.dtype) for a in tree.arrays)
        self.flat = jax.jit(self._flat)
        first, second = np.asarray(self.flat(self.base)), np.asarray(self.flat(self.base))
        self.evaluations += 2
        self.first, self.second = first, second
        self.first_dtype = first.dtype
        if self.identity:
            self.project = np.eye(m)
        else:
            self.project = np.random.default_rng(seed).standard_normal((PROJECTIONS, m))
            self.notes.append(f"{m} output elements: checked through {PROJECTIONS} random projections of the output")
        # Its own stream: drawn from the caller's seed alone, v could equal an input drawn from that seed too.
        self.v = np.random.default_rng([seed, 1]).standard_normal(len(self.project))
        with np.errstate(invalid="ignore", over="ignore"):  # an output not finite stops the check (require_usable)
            self.f0 = (self.project @ first)[:, None]
        self.sigma = np.zeros_like(self.f0)
        #: Each output row's stairs, where the noise probe crossed some, 0 elsewhere (:meth:`measure_noise`).
        self.stairs = np.zeros_like(self.f0)
        self.compiled: dict[int, Callable[..., Any]] = {}

    def _flat(self, leaves: list[Any]) -> Any:
        """The floating outputs of g, concatenated and in float64 where x64 is on (the caller's dtype otherwise)."""
        parts = [x for x in jax.tree_util.tree_leaves(self.g(leaves)) if jnp.issubdtype(x.dtype, jnp.floating)]
        return jnp.concatenate([jnp.ravel(x) for x in parts])

    def output_index(self, row: int) -> tuple[int, ...] | None:
        """The output element of a row of the identity: ``(k, *index)``, the k-th floating output and its index."""
        if not self.identity:
            return None
        for k, shape in enumerate(self.shapes):
            size = math.prod(shape)
            if row < size:
                return (k, *(int(i) for i in np.unravel_index(row, shape))) if shape else (k,)
            row -= size
        raise IndexError(row)

    def describe(self, flat: int) -> str:
        index = self.output_index(flat) if self.identity else None
        if index is None:
            return f"output element {flat}"
        return (
            f"output {index[0]} at index {tuple(index[1:])}"
            if len(self.shapes) > 1
            else f"the output at index {tuple(index[1:])}"
        )

    def require_usable(self) -> None:
        """Stopped when two calls differ (NaN equal to NaN) or an output is not finite at the primals."""
        differ = (self.first != self.second) & ~(np.isnan(self.first) & np.isnan(self.second))
        if differ.any():
            raise Stopped(
                f"the function is random: two calls with the same inputs differ (first at "
                f"{self.describe(int(np.flatnonzero(differ)[0]))}); pass a fixed jax.random key as an input"
            )
        bad = ~np.isfinite(self.first)
        if bad.any():
            where = int(np.flatnonzero(bad)[0])
            raise Stopped(
                f"the output is not finite at the given inputs: {self.describe(where)} is {self.first[where]} "
                f"({int(bad.sum())} of {bad.size} output elements not finite); a gradient check needs inputs inside "
                "the function's domain"
            )

    def measure_noise(self) -> None:
        """Each output row's rounding noise and the stairs its probe crossed, measured as every adapter measures
        them (:func:`preflight.check.function_noise.probe_noise`)."""
        points = [a.astype(np.float64) for a in self.tree.arrays]

        def rows_at(moved: list[F64]) -> F64:
            leaves = [jax.device_put(m.astype(a.dtype)) for m, a in zip(moved, self.tree.arrays, strict=True)]
            self.evaluations += 1
            rows: F64 = self.project @ np.asarray(self.flat(leaves), dtype=np.float64)
            return rows

        epsilon = max(self.input_epsilon, self.output_epsilon)
        self.sigma, self.stairs = probe_noise(
            rows_at, points, self.f0, epsilon=epsilon, output_epsilon=self.output_epsilon, seed=self.seed
        )
        self.noise = float(np.max(self.sigma)) if self.sigma.size else 0.0

    def _perturbed(self, k: int) -> Callable[..., Any]:
        """Jitted ``(leaves, indices, values) -> outputs (K, m)`` with leaf k's element ``indices[r]`` set."""
        if k not in self.compiled:

            def outputs(leaves: list[Any], indices: Any, values: Any) -> Any:
                leaf = leaves[k]

                def one(i: Any, v: Any) -> Any:
                    moved = list(leaves)
                    moved[k] = leaf.reshape(-1).at[i].set(v).reshape(leaf.shape)
                    return self._flat(moved)

                return jax.vmap(one)(indices, values)

            self.compiled[k] = jax.jit(outputs)
        return self.compiled[k]

    def block(self, k: int, eps: float | None, richardson: bool) -> Block:
        """Rows at +-h (and +-2h) for every finite element of input leaf k, steps inside the function's domain
        (:func:`preflight.check.function_steps.build_block`); more positions on demand."""
        arr = self.tree.arrays[k]
        flat = arr.reshape(-1)
        epsilon = numdiff.machine_epsilon(arr.dtype)
        h = default_steps(flat, eps, epsilon=epsilon, output_epsilon=self.output_epsilon)
        chunk = max(1, min(1024, CHUNK_ELEMENTS // max(1, self.first.size, arr.size)))
        fn = self._perturbed(k)

        def move(steps: F64, scale: float, elements: NDArray[np.intp]) -> tuple[F64, F64, NDArray[np.bool_]]:
            moved = (flat[elements].astype(np.float64) + scale * steps[elements]).astype(arr.dtype)
            signed = moved.astype(np.float64) - flat[elements].astype(np.float64)
            parts = []
            for start in range(0, elements.size, chunk):
                idx, vals = elements[start : start + chunk], moved[start : start + chunk]
                pad = chunk - idx.size
                idx = np.concatenate([idx, np.zeros(pad, dtype=idx.dtype)])
                vals = np.concatenate([vals, flat[:1].repeat(pad)])
                ys = np.asarray(fn(self.base, jnp.asarray(idx, dtype=jnp.int32), jnp.asarray(vals)), dtype=np.float64)
                parts.append(ys[: chunk - pad])
            self.evaluations += int(elements.size)
            ys = np.concatenate(parts) if parts else np.zeros((0, self.first.size))
            with np.errstate(invalid="ignore", over="ignore"):  # a row not finite: its element's step shrinks
                values: F64 = self.project @ ys.T
            return values, signed, np.all(np.isfinite(ys), axis=1)

        scales = (1.0, -1.0, 2.0, -2.0) if richardson else (1.0, -1.0)
        return build_block(self.tree.names[k], self.tree.arrays[k].shape, flat.astype(np.float64), h, move, scales,
                           (self.f0, self.sigma, epsilon), self.notes, self.stairs,
                           max(epsilon, self.output_epsilon))  # fmt: skip

    def vjp_rows(self) -> list[A]:
        """Rows ``P @ J`` per input leaf, by reverse mode: one VJP per row of P, vmapped (one compiled program)."""

        def rows(base: list[Any], cotangents: Any) -> Any:
            _, pullback = jax.vjp(self._flat, base)
            return jax.vmap(pullback)(cotangents.astype(self.first_dtype))[0]

        grads = jax.jit(rows)(self.base, jnp.asarray(self.project))
        return [np.asarray(g, dtype=np.float64).reshape(len(self.project), -1) for g in grads]

    def jvp_rows(self) -> list[A]:
        """Columns ``P @ J e_j`` per input leaf, by forward mode: one JVP per input element, vmapped."""

        def columns(base: list[Any], k: int) -> Any:
            def column(tangent: Any) -> Any:
                tangents = [jnp.zeros_like(b) for b in base]
                tangents[k] = tangent.reshape(base[k].shape)
                return jax.jvp(self._flat, (base,), (tangents,))[1]

            return jax.vmap(column)(jnp.eye(base[k].size, dtype=base[k].dtype))

        compiled = jax.jit(columns, static_argnums=1)
        return [self.project @ np.asarray(compiled(self.base, k), dtype=np.float64).T for k in range(len(self.base))]
