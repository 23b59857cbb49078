"""Perturbed losses: the interface between the gradient checker and whatever evaluates the loss.

A :class:`PerturbedLoss` takes, for each parameter tensor, one offset per coordinate and returns the loss with that
one coordinate moved, for every coordinate at once. :class:`BlackBoxLoss` does it for any ``loss(params)`` callable
by moving the caller's arrays in place one coordinate at a time; a structure-aware evaluator (the reference
network's, :mod:`preflight.network_check`) computes a whole tensor's perturbed losses in batched matrix products.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from preflight._util.validation import describe
from preflight.check.report import label as _label

__all__ = ["BlackBoxLoss", "CountedLoss", "PerturbedLoss", "output_epsilon", "scalar_loss"]

F64 = NDArray[np.float64]
Leaves = dict[str, NDArray[Any]]


class PerturbedLoss(Protocol):
    """Evaluates the loss at many single-coordinate perturbations of the parameters.

    Called with ``offsets``, a mapping name -> array shaped and typed like that parameter, it returns for every
    name in ``offsets`` a float64 array of the same shape: at ``idx``, the loss with ``params[name][idx] +=
    offsets[name][idx]`` and every other entry unchanged. Entries whose offset is exactly 0 may be skipped (their
    value is then the unperturbed loss). Names are the dotted leaf names of :func:`preflight.tree.flatten`.

    An evaluator whose check's ``loss`` is NumPy code of the parameters (it computes in float64 at float64 copies)
    may say so with a class attribute ``loss_at_float64 = True``: a float32 check then reads that loss at float64
    copies as a plain one does (:mod:`preflight.check.float64_look`, :func:`preflight.check.pooled.wide_pooled_look`).
    """

    def __call__(self, offsets: Mapping[str, NDArray[Any]], /) -> Mapping[str, F64]: ...


class BlackBoxLoss:
    """The default :class:`PerturbedLoss`: perturb the caller's arrays in place, one coordinate per loss call.

    No copy of the parameters is made: each coordinate is set to ``theta_i + offset`` (in its dtype), the loss is
    called, and the saved value is written back in a ``finally`` (bit-identical, also when the loss raises).

    Examples
    --------
    >>> w = np.array([1.0, 2.0])
    >>> costs = BlackBoxLoss(lambda p: float(np.sum(p["w"] ** 2)), {"w": w}, {"w": w})({"w": np.array([0.5, 0.0])})
    >>> costs["w"].tolist(), w.tolist()
    ([6.25, 5.0], [1.0, 2.0])
    """

    def __init__(
        self,
        loss: Callable[[Any], Any],
        params: Any,
        leaves: Leaves,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.loss, self.params, self.leaves, self.progress = loss, params, leaves, progress
        self.evaluations = 0
        #: The unperturbed loss, returned for entries whose offset is 0 (measured on first need).
        self.unperturbed: float | None = None
        #: Machine epsilon of the dtype the loss returns its value in (0 for an integer or a Python int).
        self.output_epsilon = 0.0

    def value(self, where: str = "the given params") -> float:
        """One loss evaluation at the current parameters, checked to be a finite scalar."""
        self.evaluations += 1
        raw = self.loss(self.params)
        self.output_epsilon = max(self.output_epsilon, output_epsilon(raw))
        return scalar_loss(raw, where)

    def __call__(self, offsets: Mapping[str, NDArray[Any]], /) -> dict[str, F64]:
        if self.unperturbed is None:
            self.unperturbed = self.value()
        out: dict[str, F64] = {}
        for name, offset in offsets.items():
            arr = self.leaves[name]
            costs = np.full(arr.shape, self.unperturbed, dtype=np.float64)
            index = np.flatnonzero(offset)
            costs.reshape(-1)[index] = self.range_losses(name, index, np.asarray(offset).reshape(-1)[index])
            out[name] = costs
        return out

    def range_losses(self, name: str, index: NDArray[np.intp], steps: NDArray[Any]) -> F64:
        """The losses with ``leaves[name]``'s flat entry ``index[r]`` moved by ``steps[r]``, one at a time."""
        arr = self.leaves[name]
        losses = np.empty(index.size, dtype=np.float64)
        # A C-contiguous array is addressed through a flat view; any other through index tuples.
        view = arr.reshape(-1) if arr.flags.c_contiguous else None
        positions: list[Any] = (
            index.tolist() if view is not None else list(zip(*np.unravel_index(index, arr.shape), strict=True))
        )
        target = view if view is not None else arr
        olds = arr.reshape(-1)[index]  # a copy: the exact bits to write back
        moved = (olds + steps).astype(arr.dtype)
        # One protected region around every move and its restore: an exception anywhere in it (the loss
        # raising, or a Ctrl-C landing between two bytecodes, even between a move and the next line) writes
        # every coordinate of this tensor back, bit for bit, in one NumPy call.
        try:
            for r, (i, position) in enumerate(zip(index.tolist(), positions, strict=True)):
                target[position] = moved[r]
                value = self.loss(self.params)
                target[position] = olds[r]
                if not isinstance(value, float) or not math.isfinite(value):  # np.float64 is a float too
                    value = scalar_loss(value, f"{_label(name, arr.shape, i)} moved")
                losses[r] = value
                if self.progress is not None and r % 256 == 255:
                    self.progress(256)
        except BaseException:
            _write_back(arr, index, olds)
            raise
        if self.progress is not None:
            self.progress(index.size % 256)
        self.evaluations += int(index.size)
        return losses


def _write_back(arr: NDArray[Any], index: NDArray[np.intp], olds: NDArray[Any]) -> None:
    """``arr`` at the flat positions ``index`` set to ``olds`` (any memory layout)."""
    if arr.flags.c_contiguous:
        arr.reshape(-1)[index] = olds
    else:
        arr[np.unravel_index(index, arr.shape)] = olds


class CountedLoss:
    """A caller's evaluator, counted (and ticking the progress bar) like the black box."""

    def __init__(self, evaluator: PerturbedLoss, blackbox: BlackBoxLoss) -> None:
        self.evaluator, self.blackbox = evaluator, blackbox

    def __call__(self, offsets: Mapping[str, NDArray[Any]], /) -> Mapping[str, F64]:
        out = self.evaluator(offsets)
        count = sum(int(np.count_nonzero(o)) for o in offsets.values())
        self.blackbox.evaluations += count
        if self.blackbox.progress is not None:
            self.blackbox.progress(count)
        for name, offset in offsets.items():
            values = np.asarray(out[name])
            if values.shape != np.shape(offset) or not np.all(np.isfinite(values[np.asarray(offset) != 0])):
                raise ValueError(f"evaluator: expected finite losses of shape {np.shape(offset)} for {name!r}")
        return out


#: Machine epsilon of the floating dtypes a loss may come back in, by name (torch's dtypes are named the same).
_EPSILON = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


def output_epsilon(value: Any) -> float:
    """Machine epsilon of the dtype ``value`` is in: a Python float or NumPy/torch scalar or 0-d array; 0 for an
    integer (it carries no rounding).

    Examples
    --------
    >>> output_epsilon(np.float32(1.0)), output_epsilon(1.0)
    (1.1920928955078125e-07, 2.220446049250313e-16)
    >>> output_epsilon(3)
    0.0
    """
    if isinstance(value, float):
        return _EPSILON["float64"]
    name = str(getattr(value, "dtype", "")).removeprefix("torch.")
    return _EPSILON.get(name, 0.0)


def scalar_loss(value: Any, where: str) -> float:
    """``value`` as a float, or ValueError: the loss must be a finite scalar (``where`` says at which point)."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # e.g. a torch tensor that requires grad refuses to become an array
        raise ValueError(
            f"loss: expected a scalar number, got {describe(value)} at {where}, which NumPy cannot read "
            f"({type(exc).__name__}: {str(exc).strip()[:160]}); return float(loss) (loss.item() for a tensor)"
        ) from None
    if arr.size != 1 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"loss: expected a scalar, got {describe(value)} at {where}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"loss: expected a real scalar, got the complex value {arr.reshape(())} at {where}")
    out = float(arr.reshape(()))
    if not math.isfinite(out):
        raise ValueError(f"loss: expected a finite value, got {out} at {where}")
    return out
