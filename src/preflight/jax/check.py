"""Gradient checks for JAX: every parameter of a Flax (linen or nnx) or Equinox model, or any params pytree.

``jax.grad`` is compared with central differences of real evaluations, element by element, by the engine every
preflight check runs on (:func:`preflight.check.gradcheck`): measured noise, calibrated float32 verdict, second look
at suspects, hints, the one report. The perturbed losses of a leaf come from :class:`LeafLosses`, all at once.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import NDArray

from preflight._util.validation import check_choice, check_positive_int, describe
from preflight.check import GradcheckReport, NondeterministicLossError, gradcheck
from preflight.check.reference import check_reference, with_reference
from preflight.jax._pytree import Split, split
from preflight.jax._reference import has_float32, with_float64_copy
from preflight.jax._sparse import structured_losses

__all__ = ["LeafLosses", "check_model"]

A = NDArray[Any]
Strategy = Literal["auto", "structured", "vmap", "loop"]
STRATEGIES = {
    "structured": "rank-one updates where a weight meets a product, the rest vmapped, one jit per leaf",
    "vmap": "the whole loss vmapped over a chunk of perturbed copies of a leaf, one jit per leaf",
    "loop": "one jitted loss call per perturbation",
}
#: Elements of perturbed copies (chunk x leaf size) one vmapped call may hold: 2^22 float64 values are 32 MiB.
CHUNK_ELEMENTS = 1 << 22
#: At most this many perturbations per call (beyond it the vmapped batch gains nothing on a CPU).
MAX_CHUNK = 1024


def check_model(
    loss_fn: Callable[..., Any],
    params: Any,
    *batch: Any,
    eps: float | None = None,
    method: str = "central",
    sample: int | float | None = None,
    screen: bool | int = False,
    seed: int = 0,
    progress: bool | None = None,
    strategy: Strategy = "auto",
    chunk: int | None = None,
    reference: bool | None = None,
) -> GradcheckReport:
    """Check ``jax.grad(loss_fn)`` against finite differences for every floating leaf of ``params``.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, *batch) -> scalar``. It may be jitted; it is jitted here anyway (once per leaf).
    params : pytree
        A params dict (Flax linen ``variables``), an Equinox module, an ``nnx.State``, any pytree. Its floating
        leaves are checked, named by their path (``params['dense']['kernel']``); other leaves are held fixed.
        Never modified: the check works on NumPy copies and keeps no perturbed copy once it returns.
    *batch
        Passed to ``loss_fn`` after ``params`` (arrays, or any pytree).
    eps, method, sample, screen, seed, progress
        As in :func:`preflight.check.gradcheck`.
    strategy : {"auto", "structured", "vmap", "loop"}
        How the perturbed losses of a leaf are computed. "structured": the loss's jaxpr is evaluated once per
        chunk with the leaf's perturbations carried as rank-one changes where the leaf meets a matrix product
        (a weight ``W[i, j]`` moves one column of ``x @ W``, elementwise functions keep it there and the next
        product turns it into a rank-one update), the rest vmapped; "vmap": the whole loss vmapped over perturbed
        copies; "loop": one call each. "auto": structured, falling back to vmap then loop if one fails.
    chunk : int, optional
        Perturbations per vmapped call (default: as many as fit in 2^22 elements, at most 1024).
    reference : bool, optional
        With float32 parameters (JAX's default dtype), run the same check on float64 copies of ``params`` and
        ``batch`` too, inside ``jax.enable_x64(True)``, and fail a leaf that either check fails
        (:mod:`preflight.check.reference`); a loss that does not run in float64 is checked in float32 alone, with a
        note. ``None`` (default): the copy unless ``sample`` is given (a sampled check is for models too large to
        check whole); True: always.

    Returns
    -------
    GradcheckReport
        The report of every preflight check; ``notes`` name the strategy used.

    Raises
    ------
    NondeterministicLossError
        Two calls at the same parameters differ (dropout with a fresh key, sampling).
    ValueError
        A bad argument, a loss that is not a scalar, parameters in float16 or bfloat16.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "b": jnp.array([0.5, -0.5])}
    >>> loss = lambda p, x: jnp.sum(jnp.tanh(x @ p["w"] + p["b"]) ** 2)
    >>> check_model(loss, params, jnp.array([[0.1, 0.2], [0.3, -0.4]])).passed
    True
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn: expected a callable loss_fn(params, *batch) -> scalar, got {describe(loss_fn)}")
    check_choice(strategy, name="strategy", allowed=("auto", "structured", "vmap", "loop"))
    if chunk is not None:
        chunk = check_positive_int(chunk, name="chunk")
    check_reference(reference, optional=True)
    if reference is not False and has_float32(params, *batch):
        options: dict[str, Any] = {"eps": eps, "method": method, "sample": sample, "screen": screen, "seed": seed,
                                   "progress": progress, "strategy": strategy, "chunk": chunk}  # fmt: skip
        options["reference"] = False
        own = check_model(loss_fn, params, *batch, **options)
        if reference is None and sample is not None:
            return with_reference(own, None, "a sampled check: pass reference=True to check a float64 copy too")
        again = functools.partial(check_model, loss_fn, **options)
        return with_float64_copy(own, loss_fn, again, params, *batch)
    params, loss_fn, module_note = _unwrap_module(params, loss_fn)
    tree = split(params, "params")
    job = LeafLosses(loss_fn, tree, batch, strategy, chunk)
    leaves = dict(zip(tree.names, tree.arrays, strict=True))
    try:
        report = gradcheck(
            job.loss, leaves, job.analytic(), eps=eps, sample=sample, seed=seed, method=method, screen=screen,
            evaluator=job, progress=progress, batch=_batch_size(batch),
        )  # fmt: skip
    except NondeterministicLossError as exc:
        raise NondeterministicLossError(
            f"{exc.args[0].split(': the loss is random')[0]}: the loss is random. In JAX, randomness comes from a "
            "key: pass a fixed jax.random.key to loss_fn (dropout: deterministic=True, or one fixed rng)"
        ) from None
    notes = [job.note(), *([module_note] if module_note else [])]
    return dataclasses.replace(report, notes=notes + report.notes)


def quick_compile() -> dict[str, Any] | None:
    """XLA options for a program run a few dozen times: on a CPU, LLVM without its optimization passes.

    Measured on the 1e6-parameter MLP of benchmarks/bench_jax_check.py (2 loaded cores): the loss and gradient
    program compiles in 0.66 s instead of 1.2 s and runs in 15.8 ms instead of 13.7 ms (the products are library
    calls either way; only the fused elementwise loops lose), a saving for anything under ~250 calls. The loss
    value came out the same, bit for bit.
    """
    if jax.default_backend() != "cpu" or "compiler_options" not in inspect.signature(jax.jit).parameters:
        return None  # a GPU compiles its kernels otherwise; an older jax.jit takes no compiler_options
    return {"xla_backend_optimization_level": 0}


def _batch_size(batch: tuple[Any, ...]) -> int | None:
    """The number of samples, read as JAX code lays batches out (samples first), for the hint on a missing 1/m."""
    first = jax.tree_util.tree_leaves(batch[:1])
    shape: tuple[int, ...] = tuple(getattr(first[0], "shape", ())) if first else ()
    return int(shape[0]) if shape and shape[0] > 1 else None


def _unwrap_module(params: Any, loss_fn: Callable[..., Any]) -> tuple[Any, Callable[..., Any], str | None]:
    """An ``nnx.Module`` is checked through its state (``nnx.split``), merged back for ``loss_fn``."""
    nnx = _flax_nnx()
    if nnx is None or not isinstance(params, nnx.Module):
        return params, loss_fn, None
    graphdef, state = nnx.split(params)

    def on_state(s: Any, *batch: Any) -> Any:
        return loss_fn(nnx.merge(graphdef, s), *batch)

    return state, on_state, "a flax.nnx module: checked through its state (nnx.split), merged back for loss_fn"


def _flax_nnx() -> Any:
    import sys

    # An nnx module can only exist once flax.nnx is imported; importing it here would cost a second for nothing.
    return sys.modules.get("flax.nnx")


class LeafLosses:
    """The engine's :class:`~preflight.check.PerturbedLoss` for a JAX loss: all perturbed losses of a leaf at once.

    Each leaf gets one jitted function of ``(leaves, indices, values, *batch)`` returning the loss with
    ``leaf.flat[indices[r]] = values[r]``, for every r; it is compiled once for a fixed chunk size and reused
    (the last chunk is padded with the unperturbed value), so no perturbation triggers a compile.
    """

    def __init__(
        self, loss_fn: Callable[..., Any], tree: Split, batch: tuple[Any, ...], strategy: str, chunk: int | None
    ) -> None:
        self.tree, self.batch, self.asked, self.fixed_chunk = tree, batch, strategy, chunk
        of_tree = tree.bind(loss_fn)
        shape = jax.eval_shape(of_tree, list(tree.arrays), *batch)
        if getattr(shape, "size", None) != 1 or not jnp.issubdtype(shape.dtype, jnp.floating):
            raise ValueError(
                f"loss_fn: expected a floating scalar loss (a mean or a sum over the batch), got {describe(shape)}"
            )

        def of_leaves(leaves: list[Any], *rest: Any) -> Any:
            return jnp.reshape(of_tree(leaves, *rest), ())  # a loss of shape (1,) is a scalar too

        self.of_leaves = of_leaves
        # One compiled program for the loss and its gradient: the black-box evaluations (about 30 in a check: the
        # noise probe, the determinism test, the screen) cost a backward pass each, less than a second compile.
        options = quick_compile()
        grad = jax.value_and_grad(self.of_leaves)
        self.value_and_grad = jax.jit(grad, compiler_options=options) if options else jax.jit(grad)
        self.jitted: Callable[..., Any] = lambda leaves, *batch: self.value_and_grad(leaves, *batch)[0]
        self.names = tree.names
        self.arrays = tree.arrays  # the engine perturbs these in place; self.values() reads them
        self.strategy = "structured" if strategy == "auto" else strategy
        self.fallback: str | None = None
        self.compiled: dict[tuple[str, int], Callable[..., Any]] = {}
        # The unperturbed loss and the gradient under test from one call of the compiled program.
        value, grads = self.value_and_grad(self.values(), *batch)
        self.f0 = float(value)
        self.grads: list[Any] | None = list(grads)
        self.widest: int | None = None

    def values(self) -> list[Any]:
        # device_put copies without compiling (jnp.asarray of a NumPy array compiles a copy per new shape).
        return [jax.device_put(a) for a in self.arrays]

    def loss(self, _leaves: Any) -> Any:
        """The loss at the current (possibly perturbed in place) NumPy leaves."""
        value = self.jitted(self.values(), *self.batch)
        if getattr(value, "size", 0) != 1:
            raise ValueError(f"loss_fn: expected a scalar loss (a mean or a sum over the batch), got {describe(value)}")
        return np.asarray(value).reshape(())

    def analytic(self) -> dict[str, A]:
        """The gradient ``jax.grad`` gives at the unperturbed leaves, in float64 (its device copy released)."""
        grads, self.grads = self.grads, None
        if grads is None:
            _, grads = self.value_and_grad(self.values(), *self.batch)
        return {n: np.asarray(g, dtype=np.float64) for n, g in zip(self.names, grads, strict=True)}

    def chunk(self, k: int) -> int:
        """Perturbations per call: each holds a copy of the leaf, or of the loss's largest intermediate value."""
        if self.fixed_chunk is not None:
            return self.fixed_chunk
        if self.widest is None:
            closed = jax.make_jaxpr(self.of_leaves)(self.values(), *self.batch)
            sizes = [math.prod(v.aval.shape) for e in closed.jaxpr.eqns for v in e.outvars if hasattr(v.aval, "shape")]
            self.widest = max(sizes, default=1)
        return max(1, min(MAX_CHUNK, CHUNK_ELEMENTS // max(1, self.arrays[k].size, self.widest)))

    def function(self, k: int, strategy: str) -> Callable[..., Any]:
        key = (strategy, k)
        if key not in self.compiled:
            build = structured_losses if strategy == "structured" else _vmapped_losses
            self.compiled[key] = jax.jit(build(self.of_leaves, k))
        return self.compiled[key]

    def __call__(self, offsets: Mapping[str, A], /) -> dict[str, A]:
        out = {}
        base = self.values()
        for name, offset in offsets.items():
            k = self.names.index(name)
            flat_offset = np.asarray(offset).reshape(-1)
            index = np.flatnonzero(flat_offset)
            arr = self.arrays[k]
            moved = (arr.reshape(-1)[index] + flat_offset[index]).astype(arr.dtype)
            costs = np.full(arr.size, self.f0)
            costs[index] = self.losses(base, k, index, moved)
            out[name] = costs.reshape(arr.shape)
        return out

    def losses(self, base: list[Any], k: int, index: A, moved: A) -> A:
        while True:
            try:
                if self.strategy == "loop":
                    return self._loop(base, k, index, moved)
                return self._chunked(base, k, index, moved)
            except Exception as exc:  # any failure of a transformation on this loss: fall back, say why
                if self.asked != "auto" or self.strategy == "loop":
                    raise
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                failed, self.strategy = self.strategy, "vmap" if self.strategy == "structured" else "loop"
                self.fallback = (self.fallback + "; " if self.fallback else "") + f"{failed} failed ({reason})"

    def _chunked(self, base: list[Any], k: int, index: A, moved: A) -> A:
        size = self.chunk(k)
        fn = self.function(k, self.strategy)
        flat = self.arrays[k].reshape(-1)
        out = np.empty(index.size)
        for start in range(0, index.size, size):
            idx = index[start : start + size]
            vals = moved[start : start + size]
            pad = size - idx.size
            if pad:
                idx = np.concatenate([idx, np.zeros(pad, dtype=idx.dtype)])
                vals = np.concatenate([vals, flat[:1].repeat(pad)])
            result = np.asarray(fn(base, jnp.asarray(idx, dtype=jnp.int32), jnp.asarray(vals), *self.batch))
            out[start : start + size] = result[: size - pad]
        return out

    def _loop(self, base: list[Any], k: int, index: A, moved: A) -> A:
        out = np.empty(index.size)
        shape = self.arrays[k].shape
        flat = jnp.asarray(self.arrays[k]).reshape(-1)
        for r, (i, v) in enumerate(zip(index.tolist(), moved.tolist(), strict=True)):
            leaves = list(base)
            leaves[k] = flat.at[i].set(v).reshape(shape)
            out[r] = float(self.jitted(leaves, *self.batch))
        return out

    def note(self) -> str:
        if self.fallback is None:
            return f"strategy: {self.strategy} ({STRATEGIES[self.strategy]})"
        return f"strategy: {self.strategy} ({STRATEGIES[self.strategy]}): {self.fallback}"


def _vmapped_losses(of_leaves: Callable[..., Any], k: int) -> Callable[..., Any]:
    """``(leaves, indices, values, *batch) -> losses``: the whole loss vmapped over perturbed copies of leaf k."""

    def losses(leaves: list[Any], indices: Any, values: Any, *batch: Any) -> Any:
        leaf = leaves[k]

        def one(i: Any, v: Any) -> Any:
            moved = list(leaves)
            moved[k] = leaf.reshape(-1).at[i].set(v).reshape(leaf.shape)
            return of_leaves(moved, *batch)

        return jax.vmap(one)(indices, values)

    return losses
