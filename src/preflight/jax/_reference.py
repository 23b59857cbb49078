"""Float64 copies of a float32 JAX check's arguments (:mod:`preflight.check.reference` merges the reports).

JAX computes in float32 unless x64 is enabled, so nearly every JAX check is a float32 check. The copy is made and
checked inside ``jax.enable_x64(True)`` (a context: the caller's configuration is left as it was), from the same
values (every float32 number is a float64 number). A copy is refused, with the reason, when the code does not run in
float64: an error, or a float32 result from float64 arguments (the code casts inside).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from preflight.check.reference import FLOAT32_RESOLUTION, analytic_resolution, with_reference
from preflight.check.report import GradcheckReport

__all__ = ["float64_copy", "has_float32", "with_float64_copy"]


def _is_float32(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.complex64))


def has_float32(*trees: Any) -> bool:
    """Whether any leaf of ``trees`` is float32 (or complex64): a float64 copy resolves more there."""
    return any(_is_float32(leaf) for tree in trees for leaf in jax.tree_util.tree_leaves(tree))


def float64_copy(tree: Any) -> Any:
    """``tree`` with every float32/complex64 array leaf copied to float64/complex128 (call inside x64)."""

    def wide(leaf: Any) -> Any:
        if not _is_float32(leaf):
            return leaf
        target = np.complex128 if np.dtype(leaf.dtype) == np.dtype(np.complex64) else np.float64
        return jnp.asarray(np.asarray(leaf), dtype=target)

    return jax.tree_util.tree_map(wide, tree)


def with_float64_copy(
    report: GradcheckReport, call: Callable[..., Any], check: Callable[..., GradcheckReport], *trees: Any
) -> GradcheckReport:
    """``report`` (a float32 check of ``call(*trees)``) merged with ``check(*copies)`` run on float64 copies of
    ``trees`` inside x64, or with a note saying why no copy could be checked."""
    try:
        with jax.enable_x64(True):
            wide = [float64_copy(t) for t in trees]
            shapes = jax.eval_shape(call, *wide)
            narrow = sorted({str(s.dtype) for s in jax.tree_util.tree_leaves(shapes) if _is_float32(s)})
            if narrow:
                return with_reference(report, None, f"it returns {narrow[0]} from float64 arguments: it casts inside")
            with analytic_resolution(FLOAT32_RESOLUTION, report):
                again = check(*wide)
    except Exception as error:  # code that does not run in float64 says nothing about its float32 derivatives
        return with_reference(report, None, f"it does not run in float64: {type(error).__name__}: {str(error)[:160]}")
    return with_reference(report, again)
