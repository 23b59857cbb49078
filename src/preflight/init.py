"""Weight initializers: one core, :func:`variance_scaling`, and named schemes as one-line specializations.

Every initializer is built first (its arguments checked then) and called later as ``init(rng, shape, dtype)``,
with the random generator always explicit. Samples are drawn in float64 and cast, so a float32 draw is the float64
draw rounded, and a legacy ``np.random.RandomState`` reproduces ``np.random.seed(s); np.random.randn(...)`` code.

Fans follow PyTorch's layout: a dense weight has shape ``(n_out, n_in)``; a convolution kernel
``(out_channels, in_channels, *kernel_size)`` has ``fan_in = in_channels * prod(kernel_size)`` and
``fan_out = out_channels * prod(kernel_size)``; a vector of length n has ``fan_in = fan_out = n``.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import DTypeLike, NDArray

from preflight._typing import RngLike
from preflight._validation import check_choice, check_in_range, describe

__all__ = [
    "Initializer",
    "as_generator",
    "constant",
    "fans",
    "get",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]

Mode = Literal["fan_in", "fan_out", "fan_avg"]
Distribution = Literal["normal", "truncated_normal", "uniform"]
Shape = tuple[int, ...]

MODES: tuple[str, ...] = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS: tuple[str, ...] = ("normal", "truncated_normal", "uniform")
#: Standard deviation of a standard normal truncated to [-2, 2]: dividing by it restores the requested variance.
TRUNCATED_STD = 0.8796256610342398


class Initializer(Protocol):
    """``init(rng, shape, dtype) -> array``: draws one parameter tensor."""

    def __call__(self, rng: RngLike, shape: Shape, dtype: DTypeLike = np.float64, /) -> NDArray[Any]: ...


def as_generator(rng: RngLike) -> np.random.Generator | np.random.RandomState:
    """Accept a Generator, a legacy RandomState (kept, for reproducing seeded course code) or an int seed.

    Examples
    --------
    >>> as_generator(0).standard_normal() == np.random.default_rng(0).standard_normal()
    True
    """
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng: expected a numpy Generator, RandomState or a non-negative int seed, got {describe(rng)}")


def _check_shape(shape: Any) -> Shape:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    if not isinstance(shape, tuple) or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(f"shape: expected a tuple of positive ints, got {describe(shape)}")
    return tuple(int(s) for s in shape)


def fans(shape: Shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of this shape (PyTorch layout, see the module docstring).

    Examples
    --------
    >>> fans((100, 64))
    (64, 100)
    >>> fans((16, 3, 5, 5))
    (75, 400)
    """
    shape = _check_shape(shape)
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _standard(rng: np.random.Generator | np.random.RandomState, shape: Shape, distribution: str) -> NDArray[Any]:
    """Unit-variance draws of the given distribution."""
    if distribution == "normal":
        return rng.standard_normal(shape)
    if distribution == "uniform":
        return rng.uniform(-math.sqrt(3.0), math.sqrt(3.0), shape)
    # Truncated at +-2 standard deviations by redrawing, then rescaled to unit variance.
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out / TRUNCATED_STD


def variance_scaling(scale: float, mode: Mode = "fan_in", distribution: Distribution = "normal") -> Initializer:
    """Initializer with variance ``scale / n``, n the fan chosen by ``mode``.

    Parameters
    ----------
    scale : float
        Positive multiplier of the variance (1 LeCun, 2 He, 1 with fan_avg Glorot).
    mode : {"fan_in", "fan_out", "fan_avg"}
    distribution : {"normal", "truncated_normal", "uniform"}
        Every distribution has exactly the variance ``scale / n``.

    Raises
    ------
    ValueError
        At build time, for a bad scale, mode or distribution.

    Examples
    --------
    >>> w = variance_scaling(2.0)(0, (256, 512))
    >>> round(float(w.var() * 512), 1)
    2.0
    """
    scale = check_in_range(scale, name="scale", low=0.0, high=math.inf, low_open=True, high_open=True)
    check_choice(mode, name="mode", allowed=MODES)
    check_choice(distribution, name="distribution", allowed=DISTRIBUTIONS)

    def init(rng: RngLike, shape: Shape, dtype: DTypeLike = np.float64, /) -> NDArray[Any]:
        fan_in, fan_out = fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        draws = _standard(as_generator(rng), _check_shape(shape), distribution)
        return (draws * math.sqrt(scale / n)).astype(dtype)

    return init


def zeros(rng: RngLike, shape: Shape, dtype: DTypeLike = np.float64, /) -> NDArray[Any]:
    """All zeros (every unit computes the same thing: symmetry is never broken).

    Examples
    --------
    >>> zeros(0, (2, 3)).sum()
    np.float64(0.0)
    """
    return np.zeros(_check_shape(shape), dtype=dtype)


def constant(value: float) -> Initializer:
    """Every entry equal to ``value``.

    Examples
    --------
    >>> constant(0.5)(0, (2,)).tolist()
    [0.5, 0.5]
    """
    value = check_in_range(value, name="value", low=-math.inf, high=math.inf, low_open=True, high_open=True)

    def init(rng: RngLike, shape: Shape, dtype: DTypeLike = np.float64, /) -> NDArray[Any]:
        return np.full(_check_shape(shape), value, dtype=dtype)

    return init


def normal(std: float = 1.0, mean: float = 0.0) -> Initializer:
    """Gaussian N(mean, std^2), whatever the fans (``normal(10.0)`` is the course's ``randn * 10``).

    Examples
    --------
    >>> normal(0.01)(0, (1000,)).std() < 0.011
    np.True_
    """
    std = check_in_range(std, name="std", low=0.0, high=math.inf, low_open=True, high_open=True)

    def init(rng: RngLike, shape: Shape, dtype: DTypeLike = np.float64, /) -> NDArray[Any]:
        return (as_generator(rng).standard_normal(_check_shape(shape)) * std + mean).astype(dtype)

    return init


def uniform(low: float = -1.0, high: float = 1.0) -> Initializer:
    """Uniform on [low, high).

    Examples
    --------
    >>> float(uniform(0.0, 1.0)(0, (1000,)).min()) >= 0.0
    True
    """
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"low, high: expected finite numbers with low < high, got low={low!r}, high={high!r}")

    def init(rng: RngLike, shape: Shape, dtype: DTypeLike = np.float64, /) -> NDArray[Any]:
        return as_generator(rng).uniform(low, high, _check_shape(shape)).astype(dtype)

    return init


lecun_normal = variance_scaling(1.0, "fan_in", "normal")
lecun_uniform = variance_scaling(1.0, "fan_in", "uniform")
glorot_normal = variance_scaling(1.0, "fan_avg", "normal")
glorot_uniform = variance_scaling(1.0, "fan_avg", "uniform")
he_normal = variance_scaling(2.0, "fan_in", "normal")
he_uniform = variance_scaling(2.0, "fan_in", "uniform")
xavier_normal = glorot_normal
xavier_uniform = glorot_uniform
kaiming_normal = he_normal
kaiming_uniform = he_uniform

#: Schemes by name, for ``Network.init(scheme=...)`` and the command line.
SCHEMES: dict[str, Initializer] = {
    "zeros": zeros,
    "lecun": lecun_normal,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "glorot": glorot_normal,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "xavier": glorot_normal,
    "he": he_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming": he_normal,
    "standard_normal": normal(1.0),
}


def get(scheme: str | Initializer) -> Initializer:
    """Resolve a scheme name (see ``SCHEMES``) or pass an initializer through.

    Examples
    --------
    >>> get("he") is he_normal
    True
    """
    if callable(scheme):
        return scheme
    return SCHEMES[check_choice(scheme, name="scheme", allowed=SCHEMES)]
