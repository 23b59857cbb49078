"""Type aliases and Protocols shared across preflight."""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias

import numpy as np
from numpy.typing import NDArray

__all__ = ["Array", "FloatArray", "Params", "RngLike"]

Array: TypeAlias = NDArray[Any]
FloatArray: TypeAlias = NDArray[np.floating[Any]]
#: A flat mapping of parameter name to array, as the reference network uses ("W1", "b1", ...).
Params: TypeAlias = dict[str, NDArray[Any]]
#: What a function taking randomness accepts: a Generator, a legacy RandomState, or an integer seed.
RngLike: TypeAlias = np.random.Generator | np.random.RandomState | int


class LossFn(Protocol):
    """A scalar loss of parameters."""

    def __call__(self, params: Any, /) -> float: ...
