"""Which activation a layer applies, told by what it does: the layer's recorded pre-activation ``z`` and a
candidate output ``a`` (the next layer's input, or the output of the call the jaxpr names) compared with each
activation preflight knows, applied to ``z`` in float64.

The jaxpr alone cannot tell them apart: Flax and ``jax.nn`` inline GELU and SiLU into a few multiplications, an
``integer_pow`` and a ``tanh`` (or an ``erf``), with no call to name them. The values can: GELU and SiLU differ by
0.11 at ``z = 1``, ReLU and leaky ReLU by ``0.01 |z|`` below 0, far beyond the 1e-3 that float32 rounding and GELU's
two forms leave. The jaxpr's name, when there is one, is tried first: it decides between activations that agree on
the batch (ReLU, leaky ReLU and linear on inputs that are all positive).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.propagation.mean_field import PHI

__all__ = ["TOLERANCE", "identify"]

#: Largest |a - phi(z)| / max(1, |phi(z)|) that still counts as phi: float32 rounding of the activation (a few
#: ulps, ~1e-6) and GELU's erf form against its tanh form (at most 4.7e-4 apart), with room; activations preflight
#: knows differ by at least 1e-2 wherever the batch has an input below 0 or away from 0.
TOLERANCE = 1e-3


def identify(z: NDArray[Any], a: NDArray[Any], hint: str | None = None) -> str | None:
    """The name (a key of :data:`preflight.propagation.mean_field.PHI`) of the activation with ``a = phi(z)``.

    ``hint`` (the name the jaxpr suggests) is tried first, "linear" when there is none; ``None`` when no known
    activation fits.

    Examples
    --------
    >>> z = np.linspace(-3.0, 3.0, 13)
    >>> identify(z, z * 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))), identify(z, np.tanh(z))
    ('gelu', 'tanh')
    >>> identify(z, np.maximum(z, 0)), identify(z, np.sin(z)) is None
    ('relu', True)
    """
    if z.shape != a.shape or z.size == 0:
        return None
    z64, a64 = z.astype(np.float64), a.astype(np.float64)
    # Without a name from the jaxpr, linear first: a layer with no activation call on an all-positive batch.
    first = [hint] if hint in PHI else ["linear"]
    order = first + [name for name in PHI if name not in first]
    with np.errstate(over="ignore", invalid="ignore"):
        for name in order:
            phi = PHI[name][0](z64)
            if np.all(np.abs(a64 - phi) <= TOLERANCE * np.maximum(1.0, np.abs(phi))):
                return name
    return None
