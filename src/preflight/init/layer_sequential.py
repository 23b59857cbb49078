"""Layer-sequential unit-variance initialization (LSUV; Mishkin & Matas 2015) for the reference network.

Orthogonal pre-initialization, then, layer by layer from the input, divide the weights by the standard deviation of
the layer's output (its pre-activation ``Z_l = A_{l-1} W_l^T + b_l``) on a batch until that variance is within
``tol`` of 1, at most ``max_iterations`` times per layer. Biases stay zero. The layers before l are final when l is
scaled, so each layer sees the input it will see at the start of training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import DTypeLike, NDArray

from preflight._util import jsonsafe as strict_json
from preflight._util.aliases import Params, RngLike
from preflight._util.blas import limit_blas_threads
from preflight._util.validation import check_array, check_in_range, check_positive_int
from preflight._util.warn import PreflightWarning, warn
from preflight.init import schemes as initializers

__all__ = ["LSUVLayer", "LSUVResult", "LSUVWarning", "LayeredNetwork", "lsuv"]

#: A unit is constant on the batch when its spread is within this many ulps of its magnitude (rounding of a
#: product summed over a few hundred inputs); rescaling such an output would only amplify rounding.
_ROUNDING_ULPS = 64.0


class _Activation(Protocol):
    def forward(self, z: NDArray[Any], /) -> NDArray[Any]: ...


class LayeredNetwork(Protocol):
    """What LSUV needs of a network: its sizes and depth, an ``init`` and each hidden layer's activation.

    :class:`preflight.nn.Network` is one; ``init`` stays below ``nn`` in the package's layers by asking for no more.
    """

    @property
    def sizes(self) -> list[int]: ...

    @property
    def depth(self) -> int: ...

    def init(self, rng: RngLike, scheme: Any = ..., *, dtype: DTypeLike = ...) -> Params: ...

    def activation(self, layer: int) -> _Activation: ...


def _stuck(z: NDArray[Any]) -> str | None:
    """Why ``z`` cannot be rescaled to unit variance, or None: every unit constant on the batch (relative to its
    own magnitude, so a batch of scale 1e-6 is not "constant"), or a variance beyond float64."""
    with np.errstate(over="ignore", invalid="ignore"):
        spread = np.std(z, axis=0, dtype=np.float64)
    if not np.all(np.isfinite(spread)):
        return "its output variance overflows float64: scale the batch down"
    scale = np.max(np.abs(z), axis=0).astype(np.float64)
    if np.all(spread <= _ROUNDING_ULPS * float(np.finfo(z.dtype).eps) * scale):
        return "its output is constant on the batch"
    return None


class LSUVWarning(PreflightWarning):
    """A layer did not reach unit variance (dead output or too few iterations)."""


@dataclass(frozen=True)
class LSUVLayer:
    """What LSUV did to one layer: variance of its output before and after, and how many rescalings it took."""

    layer: int
    variance_before: float
    variance_after: float
    iterations: int
    converged: bool


@dataclass(frozen=True)
class LSUVResult:
    """The initialized parameters and one record per layer."""

    params: Params
    layers: tuple[LSUVLayer, ...]

    @property
    def converged(self) -> bool:
        """Whether every layer ended within the tolerance."""
        return all(record.converged for record in self.layers)

    def to_dict(self) -> dict[str, Any]:
        """Whether every layer converged, and one object per layer."""
        return {"converged": self.converged, "layers": [record.__dict__.copy() for record in self.layers]}

    def to_json(self, *, indent: int | None = None) -> str:
        """:meth:`to_dict` as strict JSON text."""
        return strict_json.dumps(self.to_dict(), indent=indent)


@limit_blas_threads
def lsuv(
    network: LayeredNetwork,
    X: Any,
    rng: RngLike,
    *,
    tol: float = 0.1,
    max_iterations: int = 10,
    dtype: DTypeLike = np.float64,
    gain: float = 1.0,
) -> LSUVResult:
    """LSUV parameters for ``network``, scaled on the batch ``X``.

    Parameters
    ----------
    network : preflight.nn.Network, or anything with its ``sizes``, ``depth``, ``init`` and ``activation``
    X : array of shape (m, sizes[0]), or (sizes[0], m) for a network with ``layout="columns"``
        A representative batch (a few hundred samples); not modified.
    rng : Generator, RandomState or int seed
        For the orthogonal pre-initialization.
    tol : float
        Stop scaling a layer once ``|Var(Z_l) - 1| <= tol``.
    max_iterations : int
        At most this many rescalings per layer (one usually suffices for ReLU/tanh networks).
    dtype : float32 or float64
    gain : float
        Gain of the orthogonal pre-initialization.

    Returns
    -------
    LSUVResult
        ``params`` (W from LSUV, b zero) and ``layers`` (one :class:`LSUVLayer` per layer, output layer included).

    Warns
    -----
    LSUVWarning
        When a layer's output is constant on the batch, or it is still outside the tolerance after
        ``max_iterations``.

    Examples
    --------
    >>> from preflight.nn import Network
    >>> net = Network([8, 32, 32, 2], hidden="relu", output="softmax")
    >>> X = np.random.default_rng(0).standard_normal((200, 8)) * 5
    >>> result = lsuv(net, X, 0)
    >>> result.converged, [round(r.variance_after, 1) for r in result.layers]
    (True, [1.0, 1.0, 1.0])
    """
    tol = check_in_range(tol, name="tol", low=0.0, high=1.0, low_open=True, high_open=True)
    max_iterations = check_positive_int(max_iterations, name="max_iterations")
    params = network.init(rng, initializers.orthogonal(gain), dtype=dtype)
    X = check_array(X, name="X", ndim=2)
    if getattr(network, "layout", "rows") == "columns":  # samples as columns, X (n_x, m), biases (n, 1)
        if X.shape[0] != network.sizes[0] or X.shape[1] < 2:
            raise ValueError(f"X: expected {network.sizes[0]} rows and at least 2 columns, got shape {X.shape}")
        X = X.T
    elif X.shape[1] != network.sizes[0] or X.shape[0] < 2:
        raise ValueError(f"X: expected at least 2 rows and {network.sizes[0]} columns, got shape {X.shape}")
    a = X.astype(params["W1"].dtype)
    records = []
    for layer in range(1, network.depth + 1):
        w, b = params[f"W{layer}"], params[f"b{layer}"].reshape(-1)
        z = a @ w.T + b
        with np.errstate(over="ignore", invalid="ignore"):
            before = variance = float(np.var(z, dtype=np.float64))
        iterations = 0
        stuck = _stuck(z)
        while abs(variance - 1.0) > tol and iterations < max_iterations and stuck is None:
            w /= w.dtype.type(math.sqrt(variance))
            z = a @ w.T + b
            variance = float(np.var(z, dtype=np.float64))
            iterations += 1
            stuck = _stuck(z)
        converged = stuck is None and abs(variance - 1.0) <= tol
        if not converged:
            why = stuck or "too few iterations"
            warn(
                f"LSUV: layer {layer} ends with output variance {variance:.3g} ({why}); "
                "check the batch or raise max_iterations",
                LSUVWarning,
            )
        records.append(LSUVLayer(layer, before, variance, iterations, converged))
        if layer < network.depth:
            a = network.activation(layer).forward(z)
    return LSUVResult(params, tuple(records))
