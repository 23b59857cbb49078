"""Parameter trees: nested dicts, lists and tuples of arrays, flattened to named leaves or raveled to one vector.

A leaf's name is its dotted path: ``{"layers": [{"W": w}]}`` has the leaf ``"layers.0.W"``. A bare array is one leaf
named ``"params"``. :func:`ravel` copies the leaves once into one 1-D ``theta``; :meth:`TreeSpec.unravel` gives back a
tree whose leaves are zero-copy views of ``theta`` (writing through them writes ``theta``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from preflight._util.validation import describe

__all__ = ["TreeSpec", "flatten", "ravel", "unravel", "widened"]

#: Name of the single leaf when the tree is one bare array.
ROOT = "params"


@dataclass(frozen=True)
class _Leaf:
    index: int


def _walk(tree: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str | int):
                raise ValueError(f"params: keys must be str or int, got {describe(key)} at {prefix or 'the root'}")
            yield from _walk(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, list | tuple):
        for i, value in enumerate(tree):
            yield from _walk(value, f"{prefix}.{i}" if prefix else str(i))
    else:
        yield (prefix or ROOT), tree


def flatten(tree: Any) -> list[tuple[str, Any]]:
    """The leaves of ``tree`` with their dotted names, in depth-first order (no copy).

    Examples
    --------
    >>> [name for name, _ in flatten({"layers": [{"W": np.ones(2)}, {"W": np.ones(3)}], "b": np.zeros(1)})]
    ['layers.0.W', 'layers.1.W', 'b']
    """
    return list(_walk(tree, ""))


def _skeleton(tree: Any, counter: list[int]) -> Any:
    if isinstance(tree, dict):
        return {key: _skeleton(value, counter) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        items = [_skeleton(value, counter) for value in tree]
        return items if isinstance(tree, list) else tuple(items)
    counter[0] += 1
    return _Leaf(counter[0] - 1)


def _fill(skeleton: Any, leaves: list[Any]) -> Any:
    if isinstance(skeleton, _Leaf):
        return leaves[skeleton.index]
    if isinstance(skeleton, dict):
        return {key: _fill(value, leaves) for key, value in skeleton.items()}
    items = [_fill(value, leaves) for value in skeleton]
    return items if isinstance(skeleton, list) else tuple(items)


@dataclass(frozen=True)
class TreeSpec:
    """How to cut a raveled ``theta`` back into the tree it came from."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]  # start of each leaf in theta; offsets[-1] == size
    skeleton: Any

    @property
    def size(self) -> int:
        """Total number of scalars."""
        return self.offsets[-1]

    def slices(self) -> dict[str, slice]:
        """Name -> the slice of theta holding that leaf."""
        return {n: slice(self.offsets[i], self.offsets[i + 1]) for i, n in enumerate(self.names)}

    def unravel(self, theta: NDArray[Any]) -> Any:
        """The tree with leaves as views of ``theta`` (no copy when ``theta`` is contiguous)."""
        return unravel(theta, self)


def ravel(tree: Any, *, dtype: DTypeLike | None = None) -> tuple[NDArray[Any], TreeSpec]:
    """Copy the leaves of ``tree`` into one 1-D array and return it with the spec to undo it.

    Parameters
    ----------
    tree : array or nested dict / list / tuple of arrays
    dtype : dtype, optional
        Dtype of ``theta``; by default the common result type of the leaves.

    Examples
    --------
    >>> theta, spec = ravel({"W": np.ones((2, 2)), "b": np.zeros(2)})
    >>> theta.shape, spec.names
    ((6,), ('W', 'b'))
    >>> view = spec.unravel(theta); view["b"][0] = 5.0; float(theta[4])
    5.0
    """
    named = flatten(tree)
    arrays = [np.asarray(value) for _, value in named]
    for (name, _), arr in zip(named, arrays, strict=True):
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise ValueError(f"params[{name!r}]: expected a numeric array, got dtype {arr.dtype}")
    if dtype is None:
        dtype = np.result_type(*arrays) if arrays else np.float64
    offsets = np.concatenate([[0], np.cumsum([a.size for a in arrays], dtype=np.int64)]).astype(int)
    theta = np.empty(int(offsets[-1]), dtype=dtype)
    for i, arr in enumerate(arrays):
        theta[offsets[i] : offsets[i + 1]] = arr.reshape(-1)
    spec = TreeSpec(
        names=tuple(name for name, _ in named),
        shapes=tuple(a.shape for a in arrays),
        offsets=tuple(int(o) for o in offsets),
        skeleton=_skeleton(tree, [0]),
    )
    return theta, spec


def unravel(theta: NDArray[Any], spec: TreeSpec) -> Any:
    """Cut ``theta`` (1-D, of ``spec.size`` entries) into the tree described by ``spec``; leaves are views.

    Examples
    --------
    >>> theta, spec = ravel([np.arange(3.0), (np.ones((1, 2)),)])
    >>> unravel(theta * 2, spec)[1][0].tolist()
    [[2.0, 2.0]]
    """
    if theta.ndim != 1 or theta.size != spec.size:
        raise ValueError(f"theta: expected a 1-D array of {spec.size} entries, got {describe(theta)}")
    leaves = [theta[spec.offsets[i] : spec.offsets[i + 1]].reshape(shape) for i, shape in enumerate(spec.shapes)]
    return _fill(spec.skeleton, leaves)


def widened(tree: Any) -> Any:
    """A float64 copy of ``tree`` (same structure, every leaf a float64 array holding the same values).

    Examples
    --------
    >>> wide = widened({"W": np.ones(2, np.float32), "b": [np.zeros(1, np.float32)]})
    >>> wide["W"].dtype, wide["b"][0].dtype
    (dtype('float64'), dtype('float64'))
    """
    theta, spec = ravel(tree, dtype=np.float64)
    return unravel(theta, spec)
