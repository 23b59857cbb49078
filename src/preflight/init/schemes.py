"""Weight initializers: one core, :func:`variance_scaling`, and named schemes as one-line specializations.

Every initializer is built first (its arguments checked then) and called later as ``init(rng, shape, dtype)``,
with the random generator always explicit. Samples are drawn in float64 and cast, so a float32 draw is the float64
draw rounded, and a legacy ``np.random.RandomState`` reproduces ``np.random.seed(s); np.random.randn(...)`` code.

Fans follow PyTorch's layout: a dense weight has shape ``(n_out, n_in)``; a convolution kernel
``(out_channels, in_channels, *kernel_size)`` has ``fan_in = in_channels * prod(kernel_size)`` and
``fan_out = out_channels * prod(kernel_size)``; a vector of length n has ``fan_in = fan_out = n``.

Arguments that do not depend on the shape (scale, mode, distribution, gain, std) are checked when the initializer is
built; the shape, only known at the call, is checked first thing in the call, before any random number is drawn.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import DTypeLike, NDArray

from preflight._util.aliases import RngLike
from preflight._util.rng import as_generator
from preflight._util.validation import check_choice, check_in_range, describe

__all__ = [
    "Initializer",
    "as_generator",
    "constant",
    "fans",
    "gain",
    "get",
    "glorot_normal",
    "glorot_uniform",
    "he",
    "he_normal",
    "he_uniform",
    "identity",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "orthogonal",
    "truncated_normal",
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


def _check_shape(shape: Any) -> Shape:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    if (
        not isinstance(shape, tuple)
        or not shape
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape)
    ):
        raise ValueError(f"shape: expected a non-empty tuple of positive ints, got {describe(shape)}")
    return tuple(int(s) for s in shape)


def _check_dtype(dtype: Any) -> np.dtype[Any]:
    """A floating dtype: weights drawn at variance 2/n would round to -1, 0 and 1 as integers."""
    try:
        out: np.dtype[Any] = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype: expected a floating dtype such as float32, got {describe(dtype)}") from None
    if not np.issubdtype(out, np.floating):
        raise ValueError(f"dtype: expected a floating dtype such as float32, got {out}")
    return out


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
        dtype = _check_dtype(dtype)  # before any draw
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
    dtype = _check_dtype(dtype)  # before any draw
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
        dtype = _check_dtype(dtype)  # before any draw
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
    mean = check_in_range(mean, name="mean", low=-math.inf, high=math.inf)

    def init(rng: RngLike, shape: Shape, dtype: DTypeLike = np.float64, /) -> NDArray[Any]:
        dtype = _check_dtype(dtype)  # before any draw
        return (as_generator(rng).standard_normal(_check_shape(shape)) * std + mean).astype(dtype)

    return init


def uniform(low: float = -1.0, high: float = 1.0) -> Initializer:
    """Uniform on [low, high).

    Examples
    --------
    >>> float(uniform(0.0, 1.0)(0, (1000,)).min()) >= 0.0
    True
    """
    low = check_in_range(low, name="low", low=-math.inf, high=math.inf)
    high = check_in_range(high, name="high", low=-math.inf, high=math.inf)
    if not low < high:
        raise ValueError(f"low, high: expected finite numbers with low < high, got low={low!r}, high={high!r}")

    def init(rng: RngLike, shape: Shape, dtype: DTypeLike = np.float64, /) -> NDArray[Any]:
        dtype = _check_dtype(dtype)  # before any draw
        return as_generator(rng).uniform(low, high, _check_shape(shape)).astype(dtype)

    return init


def truncated_normal(std: float = 1.0, mean: float = 0.0) -> Initializer:
    """Normal cut at two standard deviations, with the variance correction: the samples' std is exactly ``std``.

    A standard normal truncated to [-2, 2] has std ``TRUNCATED_STD`` (0.8796...), so the draws are divided by it:
    values lie in ``mean +- 2 std / 0.8796``. (PyTorch's ``trunc_normal_`` cuts at absolute bounds instead and
    does not correct; JAX's and Keras's ``truncated_normal`` variance scaling correct as here.)

    Examples
    --------
    >>> w = truncated_normal(0.5)(0, (200_000,))
    >>> round(float(w.std()), 2), bool(abs(w).max() <= 2 * 0.5 / TRUNCATED_STD)
    (0.5, True)
    """
    std = check_in_range(std, name="std", low=0.0, high=math.inf, low_open=True, high_open=True)
    mean = check_in_range(mean, name="mean", low=-math.inf, high=math.inf, low_open=True, high_open=True)

    def init(rng: RngLike, shape: Shape, dtype: DTypeLike = np.float64, /) -> NDArray[Any]:
        dtype = _check_dtype(dtype)  # before any draw
        draws = _standard(as_generator(rng), _check_shape(shape), "truncated_normal")
        return (draws * std + mean).astype(dtype)

    return init


def _matrix_shape(shape: Any, who: str) -> Shape:
    checked = _check_shape(shape)
    if len(checked) < 2:
        raise ValueError(f"shape: {who} needs a weight with at least 2 dimensions, got shape {checked}")
    return checked


def orthogonal(gain: float = 1.0) -> Initializer:
    """A (semi-)orthogonal matrix times ``gain`` (Saxe et al. 2014), as ``torch.nn.init.orthogonal_``.

    The weight is flattened to ``(shape[0], prod(shape[1:]))``; its rows are orthonormal when it is wide and its
    columns when it is tall (``W^T W = gain^2 I``). Drawn as the Q of a QR decomposition of a Gaussian matrix with
    the signs of R's diagonal folded in, so Q is uniform (Haar) over the orthogonal group.

    Examples
    --------
    >>> w = orthogonal()(0, (5, 3))
    >>> bool(np.allclose(w.T @ w, np.eye(3)))
    True
    """
    gain = check_in_range(gain, name="gain", low=0.0, high=math.inf, low_open=True, high_open=True)

    def init(rng: RngLike, shape: Shape, dtype: DTypeLike = np.float64, /) -> NDArray[Any]:
        dtype = _check_dtype(dtype)  # before any draw
        shape = _matrix_shape(shape, "orthogonal")
        rows, cols = shape[0], math.prod(shape[1:])
        flat = as_generator(rng).standard_normal((rows, cols))
        if rows < cols:
            flat = flat.T
        q, r = np.linalg.qr(flat)
        q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
        if rows < cols:
            q = q.T
        return (q * gain).reshape(shape).astype(dtype)

    return init


def identity(scale: float = 1.0) -> Initializer:
    """``scale`` times the identity: ``eye(n_out, n_in)`` for a dense weight, a centred Dirac kernel for a conv.

    A deep linear network with ``identity(a)`` maps x to ``a^L x``: it grows or vanishes exponentially unless
    ``a = 1``. Deterministic: ``rng`` is accepted (for the common signature) and not used.

    Examples
    --------
    >>> identity(2.0)(0, (2, 3)).tolist()
    [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    """
    scale = check_in_range(scale, name="scale", low=-math.inf, high=math.inf, low_open=True, high_open=True)

    def init(rng: RngLike, shape: Shape, dtype: DTypeLike = np.float64, /) -> NDArray[Any]:
        dtype = _check_dtype(dtype)  # before any draw
        shape = _matrix_shape(shape, "identity")
        out = np.zeros(shape, dtype=np.float64)
        centre = tuple(k // 2 for k in shape[2:])
        for i in range(min(shape[0], shape[1])):
            out[(i, i, *centre)] = scale
        return out.astype(dtype)

    return init


#: Nonlinearities whose gain is 1 (PyTorch's list), then the others.
_UNIT_GAIN: tuple[str, ...] = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)
NONLINEARITIES: tuple[str, ...] = (*_UNIT_GAIN, "tanh", "relu", "leaky_relu", "selu")
#: PyTorch's default negative slope for leaky ReLU (and preflight.activations.LEAKY_SLOPE).
DEFAULT_LEAKY_SLOPE = 0.01


def gain(nonlinearity: str, param: float | None = None) -> float:
    """The recommended gain for a nonlinearity, with the values of ``torch.nn.init.calculate_gain``.

    linear, conv*, sigmoid: 1; tanh: 5/3; relu: sqrt(2); leaky_relu: sqrt(2 / (1 + slope^2)) with ``param`` the
    negative slope (default 0.01); selu: 3/4. The variance of a He-style initializer is ``gain^2 / fan``.

    Raises
    ------
    ValueError
        For an unknown nonlinearity, or a ``param`` that is not a number or given to one that takes none.

    Examples
    --------
    >>> gain("relu") == math.sqrt(2), gain("tanh")
    (True, 1.6666666666666667)
    """
    check_choice(nonlinearity, name="nonlinearity", allowed=NONLINEARITIES)
    if param is not None and nonlinearity != "leaky_relu":
        raise ValueError(f"param: {nonlinearity!r} takes no parameter, got {param!r}; pass param=None")
    if nonlinearity in _UNIT_GAIN:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4.0
    slope = DEFAULT_LEAKY_SLOPE if param is None else param
    slope = check_in_range(slope, name="param", low=-math.inf, high=math.inf, low_open=True, high_open=True)
    return math.sqrt(2.0 / (1.0 + slope**2))


def he(
    mode: Mode = "fan_in",
    distribution: Distribution = "normal",
    *,
    nonlinearity: str = "relu",
    param: float | None = None,
) -> Initializer:
    """He (Kaiming) initialization as in ``torch.nn.init.kaiming_*_``: variance ``gain(nonlinearity)^2 / fan``.

    ``he()`` draws like :data:`he_normal`; ``he("fan_out")`` keeps the backward signal's variance instead of the
    forward one; ``he(nonlinearity="leaky_relu", param=0.2)`` corrects for a leaky slope.

    Examples
    --------
    >>> w = he("fan_out")(0, (100, 400))
    >>> round(float(w.var() * 100), 1)
    2.0
    """
    g = gain(nonlinearity, param)
    # Exact squares for the common cases: sqrt(2) ** 2 is 2.0000000000000004, which would change he_normal's draws.
    exact = {"relu": 2.0, "tanh": 25.0 / 9.0}
    return variance_scaling(exact.get(nonlinearity, g * g), mode, distribution)


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
    "he_fan_out": he("fan_out"),
    "he_uniform_fan_out": he("fan_out", "uniform"),
    "lecun_truncated_normal": variance_scaling(1.0, "fan_in", "truncated_normal"),
    "he_truncated_normal": variance_scaling(2.0, "fan_in", "truncated_normal"),
    "orthogonal": orthogonal(1.0),
    "orthogonal_relu": orthogonal(math.sqrt(2.0)),
    "identity": identity(1.0),
    "standard_normal": normal(1.0),
}


def get(scheme: str | Initializer) -> Initializer:
    """Resolve a scheme name (see ``SCHEMES``) or pass an initializer through.

    Examples
    --------
    >>> get("he") is he_normal
    True
    """
    factory = next((name for name, f in _FACTORIES.items() if scheme is f), None)
    if factory is not None:
        raise ValueError(f"scheme: init.{factory} builds an initializer; call it first: init.{factory}(...)")
    if callable(scheme):
        return scheme
    return SCHEMES[check_choice(scheme, name="scheme", allowed=SCHEMES)]


#: Functions that build an initializer (their arguments checked), as opposed to initializers themselves.
_FACTORIES: dict[str, Any] = {
    "variance_scaling": variance_scaling,
    "constant": constant,
    "normal": normal,
    "uniform": uniform,
    "truncated_normal": truncated_normal,
    "orthogonal": orthogonal,
    "identity": identity,
    "he": he,
}
