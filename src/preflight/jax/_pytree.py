"""Pytrees for the engine: the floating-point leaves of any JAX pytree as named NumPy copies, and back.

A leaf's name is its pytree path (``params['dense']['kernel']``, ``model.layers[0].weight``), as
:func:`jax.tree_util.keystr` writes it after a root name. Leaves that are not floating-point arrays (integers, PRNG
keys, activation functions held by an Equinox module, ``None``) are held fixed and passed through untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import NDArray

from preflight._util.validation import describe

#: jnp.finfo (untyped in jax's stubs), which knows bfloat16 as NumPy does not.
_finfo: Any = jnp.finfo

__all__ = ["CHECKABLE", "Split", "check_precision", "split"]

#: Dtypes a finite-difference check can judge. At the best step a central difference errs by about eps^(2/3)
#: relative: 1 % in float16 (eps 2^-10), 4 % in bfloat16 (eps 2^-7): a factor-2 bug would hide in the tolerance.
CHECKABLE = ("float32", "float64")


def check_precision(dtype: Any, what: str, *, fix: str) -> None:
    """ValueError naming ``what`` when ``dtype`` is a floating dtype too coarse for a finite-difference check.

    Examples
    --------
    >>> check_precision(jnp.bfloat16, "params['w']", fix="pass float32 params")
    Traceback (most recent call last):
    ...
    ValueError: params['w']: dtype bfloat16 has too few significant bits for a gradient check ...
    """
    name = str(np.dtype(dtype))
    if jnp.issubdtype(dtype, jnp.floating) and name not in CHECKABLE:
        eps = float(_finfo(dtype).eps)
        raise ValueError(
            f"{what}: dtype {name} has too few significant bits for a gradient check (machine eps {eps:.3g}: the "
            f"rounding of a finite difference would hide an error as large as the gradient itself); expected float32 "
            f"or float64: {fix}"
        )


def _floating(leaf: Any) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray)) and bool(jnp.issubdtype(leaf.dtype, jnp.floating))


@dataclass(frozen=True)
class Split:
    """A pytree cut into its floating leaves (``names``, ``arrays``: NumPy copies in the dtype JAX computes in)
    and everything else (held fixed); :meth:`rebuild` puts leaves back into the tree's structure."""

    treedef: Any
    leaves: tuple[Any, ...]
    positions: tuple[int, ...]
    names: tuple[str, ...]
    arrays: tuple[NDArray[Any], ...]

    def rebuild(self, checked: Sequence[Any]) -> Any:
        """The tree with the floating leaves replaced by ``checked`` (same order as ``names``)."""
        leaves = list(self.leaves)
        for position, value in zip(self.positions, checked, strict=True):
            leaves[position] = value
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def bind(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn(tree, *rest)`` as a function of the floating leaves (a list) and ``rest``: what JAX transforms."""

        def of_leaves(checked: Sequence[Any], *rest: Any) -> Any:
            return fn(self.rebuild(checked), *rest)

        return of_leaves


def split(tree: Any, root: str, *, what: str = "params", finite: bool = True) -> Split:
    """The floating leaves of ``tree`` by path name (``root`` + path), as contiguous NumPy copies.

    A leaf in a dtype JAX would not compute in (float64 while x64 is off) is copied in the dtype it becomes.
    ``finite``: refuse NaN/inf values (parameters); ``False`` keeps them, for ``check_function``, which gives such
    an element no step and names it as skipped (:func:`preflight.check.function_steps.build_block`).

    Raises
    ------
    ValueError
        No floating leaf, or one in float16/bfloat16, or NaN/inf (with ``finite``).

    Examples
    --------
    >>> s = split({"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.zeros(3)}, "step": 3}, "params")
    >>> s.names
    ("params['dense']['bias']", "params['dense']['kernel']")
    """
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    leaves = tuple(leaf for _, leaf in with_path)
    positions, names, arrays = [], [], []
    for position, (path, leaf) in enumerate(with_path):
        if not _floating(leaf):
            continue
        name = root + jax.tree_util.keystr(path)
        check_precision(leaf.dtype, f"{what} ({name})", fix=f"check a float32 or float64 copy of {what}")
        # The dtype JAX computes in (float64 becomes float32 while x64 is off), copied without a compile.
        array = np.array(leaf, dtype=jax.dtypes.canonicalize_dtype(leaf.dtype), copy=True, order="C")
        if finite and not np.all(np.isfinite(array)):
            first = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
            raise ValueError(f"{what} ({name}): expected finite values, got NaN/inf at index {first}")
        positions.append(position)
        names.append(name)
        arrays.append(array)
    if not arrays:
        raise ValueError(f"{what}: expected a pytree with at least one floating-point array, got {describe(tree)}")
    return Split(treedef, leaves, tuple(positions), tuple(names), tuple(arrays))
