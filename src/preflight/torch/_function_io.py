"""A checked function seen as real in, real out: what ``check_function`` differentiates, and what it reports.

A complex input is checked through its real and imaginary parts (``torch.view_as_real``: a trailing index 0 for the
real part, 1 for the imaginary one) and handed back to the function as complex; a complex output is read the same
way. Outputs autograd does not differentiate (batch norm's saved statistics, integer indices) are left out, and
every output the check reads is flattened into one float64 vector. Gradients autograd hands back as placeholders
(``None`` for an unused input, a zero tensor of torch's ``ZeroTensor`` kind, expanded zero-stride views) become
ordinary dense tensors here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["RealFunction", "dense", "differentiable_kind"]


def differentiable_kind(t: Any) -> bool:
    """A tensor autograd can differentiate: floating point or complex."""
    return isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())


def dense(g: torch.Tensor | None, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A gradient as an ordinary contiguous real tensor: zeros of ``shape`` and ``dtype`` for ``None`` (an unused
    input) or a ``ZeroTensor`` (autograd's zero placeholder, as for ``torch.sgn``), a complex one as its real view.

    Examples
    --------
    >>> dense(None, (2, 3), torch.float64).shape
    torch.Size([2, 3])
    >>> dense(torch.zeros(3).expand(2, 3), (2, 3), torch.float32).is_contiguous()
    True
    """
    if g is None or g._is_zerotensor():
        return torch.zeros(shape, dtype=dtype)
    return _real(g).detach().contiguous()


def _real(t: torch.Tensor) -> torch.Tensor:
    # Stacked rather than torch.view_as_real: the backward of that view needs an even storage offset and strides
    # of its gradient, which a row of a batched vector-Jacobian product does not have (linalg.eig's outputs).
    return torch.stack((t.real, t.imag), dim=-1) if t.is_complex() else t


class RealFunction:
    """``fn`` as a function of real tensors (complex checked inputs as their real views) returning real parts.

    Parameters
    ----------
    fn : callable
        The user's function.
    inputs : sequence
        Its arguments; the checked ones (``positions``) are cloned, complex ones turned into real views.
    positions : list of int
        The checked arguments.
    """

    def __init__(self, fn: Callable[..., Any], inputs: Sequence[Any], positions: list[int]) -> None:
        self.fn = fn
        self.positions = positions
        self.complex = {i for i in positions if inputs[i].is_complex()}
        contiguous = torch.contiguous_format
        self.inputs: list[Any] = []
        for i, x in enumerate(inputs):
            if i in positions:
                x = x.detach().clone(memory_format=contiguous)
                x = torch.view_as_real(x.resolve_conj()).clone() if i in self.complex else x
            self.inputs.append(x)
        self.notes: list[str] = []
        self.mask = self._differentiable_outputs()
        with torch.no_grad():
            items = [t for t, keep in zip(self._items(self.call(self.inputs)), self.mask, strict=False) if keep]
        parts = [_real(t) for t in items]
        #: Shapes of the outputs read (a complex output's with its trailing real/imaginary index).
        self.shapes = [tuple(t.shape) for t in parts]
        #: Which of those outputs were complex.
        self.complex_outputs = [t.is_complex() for t in items]
        self.dtypes = [t.dtype for t in parts]
        self.size = sum(t.numel() for t in parts)
        if self.complex or any(self.complex_outputs):
            self.notes.append(
                "complex values checked through their real and imaginary parts (a last index of 0 for the real part, "
                "1 for the imaginary one)"
            )

    def call(self, values: Sequence[Any]) -> Any:
        """``fn`` on real values (complex checked inputs rebuilt from their real views)."""
        args = [torch.view_as_complex(v) if j in self.complex else v for j, v in enumerate(values)]
        return self.fn(*args)

    def _items(self, result: Any) -> list[torch.Tensor]:
        items = result if isinstance(result, (tuple, list)) else [result]
        return [t for t in items if differentiable_kind(t)]

    def _differentiable_outputs(self) -> list[bool]:
        """Which floating or complex outputs autograd differentiates (batch norm's saved statistics it does not)."""
        leaves = [x.clone().requires_grad_(True) if i in self.positions else x for i, x in enumerate(self.inputs)]
        with torch.enable_grad():
            items = self._items(self.call(leaves))
        if not items:
            raise ValueError("fn: expected it to return a floating-point or complex tensor (or a tuple of them)")
        mask = [t.requires_grad for t in items]
        if len(mask) > sum(mask):
            self.notes.append(f"{len(mask) - sum(mask)} output(s) not differentiable (autograd marks them so): skipped")
        if not any(mask) and any(t.numel() for t in items):
            raise ValueError("fn: none of its outputs is differentiable with respect to the checked inputs")
        return mask

    def parts(self, result: Any) -> list[torch.Tensor]:
        """The differentiable outputs of a result of ``fn``, complex ones as their real views."""
        return [_real(t) for t, keep in zip(self._items(result), self.mask, strict=False) if keep]

    def flat(self, values: Sequence[Any]) -> torch.Tensor:
        """Every output element read, as one float64 vector (no gradient)."""
        parts = self.parts(self.call(values))
        return torch.cat([t.detach().reshape(-1).double() for t in parts]) if parts else torch.zeros(0)

    def output_element(self, flat: int) -> str:
        """Element ``flat`` of the concatenated outputs, by which output and its index there."""
        for k, shape in enumerate(self.shapes):
            size = int(np.prod(shape))
            if flat < size:
                index = tuple(int(v) for v in np.unravel_index(flat, shape)) if shape else ()
                part = ""
                if self.complex_outputs[k]:
                    part = " (imaginary part)" if index[-1] else " (real part)"
                where = f"output {k}" if len(self.shapes) > 1 else "the output"
                return f"{where} at index {index}{part}"
            flat -= size
        raise IndexError(flat)

    def blocks(self) -> list[slice]:
        """Where each output's elements sit in the flat vector."""
        out, start = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            out.append(slice(start, start + size))
            start += size
        return out
