"""The PyTorch module behind ``Standardizer.to_torch`` (imported only when torch is wanted)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = ["Standardize"]


class Standardize(torch.nn.Module):
    """``(x - mean) / scale`` with ``mean`` and ``scale`` as buffers, like Keras' Normalization layer.

    Buffers travel with ``state_dict`` and ``.to(device)``, so a trained model carries its normalization to
    inference.
    """

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, mean: NDArray[np.float64], scale: NDArray[np.float64], *, dtype: Any = None) -> None:
        super().__init__()
        dtype = torch.get_default_dtype() if dtype is None else dtype
        self.register_buffer("mean", torch.as_tensor(np.array(mean), dtype=dtype))
        self.register_buffer("scale", torch.as_tensor(np.array(scale), dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardize ``x`` (features in the last dimension)."""
        return (x - self.mean) / self.scale

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Back to the original units."""
        return z * self.scale + self.mean

    def extra_repr(self) -> str:
        return f"features={self.mean.shape[0]}"
