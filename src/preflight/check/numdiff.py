"""Finite differences with a step chosen per coordinate and an error estimate on every value.

Three formulas, all with an error estimate (``Estimate.error``) that adds the rounding error of the loss values
(``noise`` per evaluation, divided by the step) and the truncation error:

- ``forward``: ``(f(x+h) - f(x)) / h``, truncation ``h f''/2`` (O(h)), step ``sqrt(eps) max(1, |x|)``;
- ``central`` (the default): ``(f(x+h) - f(x-h)) / 2h``, truncation ``h^2 f'''/6`` (O(h^2)), step
  ``cbrt(eps) max(1, |x|)``: rounding ``~eps/h`` and truncation ``~h^2`` balance there;
- ``richardson``: ``(4 D(h) - D(2h)) / 3`` from two central differences, truncation O(h^4).

Every step is made exactly representable: ``h = (x + h) - x`` in the dtype of ``x``, so the point evaluated is
exactly ``x + h`` (the classic trick of Numerical Recipes and numdifftools). The rounding error of the loss itself
is measured, not guessed, by :func:`estimate_noise` (Moré and Wild's ECnoise: high-order differences of values
taken a few ulps apart are pure noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import DTypeLike, NDArray

from preflight._util.validation import check_array, check_choice, check_in_range

__all__ = [
    "COARSE_EPSILON",
    "METHODS",
    "Estimate",
    "central",
    "estimate_noise",
    "estimate_noise_rows",
    "forward",
    "gradient",
    "machine_epsilon",
    "noise_at",
    "richardson",
    "step_size",
]

Method = Literal["central", "forward", "richardson"]
METHODS: tuple[str, ...] = ("central", "forward", "richardson")
F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    """Derivative values with an absolute error estimate for each."""

    value: F64
    error: F64


#: A machine epsilon at or above this rounds like float32 or coarser (float32's is 1.2e-7, float64's 2.2e-16): what
#: float32 differences resolve, where float64 copies of the same values resolve far finer.
COARSE_EPSILON = 1e-10


def machine_epsilon(dtype: DTypeLike) -> float:
    """Machine epsilon of a floating dtype (2.2e-16 for float64, 1.2e-7 for float32)."""
    return float(np.finfo(np.dtype(dtype)).eps)


def step_size(x: Any, *, method: str = "central", eps: float | None = None) -> NDArray[Any]:
    """Per-coordinate step ``base x max(1, |x_i|)``, exactly representable in the dtype of ``x``.

    Parameters
    ----------
    x : float array
        The point; its dtype decides ``base`` (``cbrt(eps)`` for central and Richardson, ``sqrt(eps)`` forward).
    method : {"central", "forward", "richardson"}
    eps : float, optional
        Overrides ``base``.

    Returns
    -------
    h : array of the dtype and shape of ``x``, with ``(x + h) - x == h`` exactly and every entry > 0.

    Examples
    --------
    >>> h = step_size(np.array([0.0, 3.0, -100.0]))
    >>> bool(np.all((np.array([0.0, 3.0, -100.0]) + h) - np.array([0.0, 3.0, -100.0]) == h))
    True
    >>> float(step_size(np.float32([0.5]))[0]) > 1e-3
    True
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"x: expected a floating array, got dtype {x.dtype}")
    check_choice(method, name="method", allowed=METHODS)
    machine = machine_epsilon(x.dtype)
    if eps is None:
        base = machine ** (1 / 2) if method == "forward" else machine ** (1 / 3)
    else:
        base = float(eps)
        if not (base > 0 and math.isfinite(base)):
            raise ValueError(f"eps: expected a positive finite step, got {eps!r}")
    raw = (base * np.maximum(1.0, np.abs(x.astype(np.float64)))).astype(x.dtype)
    h = (x + raw) - x
    # A step below one ulp of x rounds to 0: use the smallest representable move instead.
    tiny = np.nextafter(x, np.asarray(np.inf, dtype=x.dtype)) - x
    out: NDArray[Any] = np.where(h > 0, h, tiny)
    return out


def _rounding(noise: float | F64, h: F64) -> F64:
    out: F64 = np.asarray(noise, dtype=np.float64) / h
    return out


def forward(f0: float, f_plus: F64, h: F64, *, noise: float | F64, f_plus2: F64 | None = None) -> Estimate:
    """One-sided difference ``(f(x+h) - f(x)) / h``.

    The truncation error ``h f''/2`` is bounded from ``f(x+2h)`` when given (twice ``|D(h) - D(2h)|``, which is
    ``h |f''| / 2`` to first order), else left out. Rounding: two values, each off by up to ``noise``: ``2 noise / h``.

    Examples
    --------
    >>> e = forward(1.0, np.array([1.0 + 1e-4]), np.array([1e-4]), noise=1e-16)
    >>> round(float(e.value[0]), 6)
    1.0
    """
    value = (np.asarray(f_plus, dtype=np.float64) - f0) / h
    error = 2 * _rounding(noise, h)
    if f_plus2 is not None:
        # D(h) - D(2h) = -h f''/2 + O(h^2): the truncation itself; twice it leaves room for the O(h^2) term.
        error = error + 2 * np.abs(value - (np.asarray(f_plus2, dtype=np.float64) - f0) / (2 * h))
    return Estimate(value, error)


def central(
    f0: float, f_plus: F64, f_minus: F64, h_plus: F64, h_minus: F64 | None = None, *, noise: float | F64
) -> Estimate:
    """Two-sided difference ``(f(x+h) - f(x-h)) / (h+ + h-)``.

    Error: rounding ``noise / h`` (two values off by ``noise`` each, over ``2h``) plus a truncation estimate
    ``|f(x+h) - 2 f(x) + f(x-h)| / (6h) = h |f''| / 6``: the true truncation ``h^2 |f'''| / 6`` is below it
    wherever the step is shorter than the scale ``|f''/f'''|`` on which the curvature changes. Where ``f'' = 0``
    (an inflection point, an odd function at 0) this estimate is 0; :func:`gradient` adds the third-derivative term
    measured from two more values at ``x +- 2h``.

    Examples
    --------
    >>> x, h = 0.3, np.array([1e-5])
    >>> e = central(np.sin(x), np.sin(x + h), np.sin(x - h), h, noise=1e-16)
    >>> bool(abs(e.value[0] - np.cos(x)) <= e.error[0])
    True
    """
    h_minus = h_plus if h_minus is None else h_minus
    fp, fm = np.asarray(f_plus, dtype=np.float64), np.asarray(f_minus, dtype=np.float64)
    hp, hm = np.asarray(h_plus, dtype=np.float64), np.asarray(h_minus, dtype=np.float64)
    value = (fp - fm) / (hp + hm)
    h = (hp + hm) / 2
    curvature = np.abs((fp - f0) / hp - (f0 - fm) / hm)
    return Estimate(value, _rounding(noise, h) + curvature / 6)


def richardson(central_h: Estimate, central_2h: Estimate, h: F64, *, noise: float | F64) -> Estimate:
    """Richardson extrapolation ``(4 D(h) - D(2h)) / 3`` of two central differences (truncation O(h^4)).

    Error: ``|R - D(h)|`` (the change the extrapolation made, a bound on the error left in the better of the two
    estimates) plus the rounding carried through the combination, ``(4 + 1/2) noise / (3h)``.

    Examples
    --------
    >>> x, h = 0.3, np.array([1e-3])
    >>> d1 = central(np.exp(x), np.exp(x + h), np.exp(x - h), h, noise=1e-16)
    >>> d2 = central(np.exp(x), np.exp(x + 2 * h), np.exp(x - 2 * h), 2 * h, noise=1e-16)
    >>> r = richardson(d1, d2, h, noise=1e-16)
    >>> bool(abs(r.value[0] - np.exp(x)) < 1e-12)
    True
    """
    value = (4 * central_h.value - central_2h.value) / 3
    error = np.abs(value - central_h.value) + 1.5 * _rounding(noise, np.asarray(h, dtype=np.float64))
    return Estimate(value, error)


def estimate_noise(values: Sequence[float] | F64) -> float:
    """Standard deviation of the rounding noise in loss values taken at equally spaced, very close points.

    ECnoise (Moré and Wild, SIAM J. Sci. Comput. 2011): the k-th differences of a smooth function sampled a few
    ulps apart are noise alone; ``sigma_k^2 = gamma_k mean((Delta^k f)^2)`` with ``gamma_k = (k!)^2 / (2k)!``.
    Returns the root mean square of the estimates for k = 3..6 (each is unbiased for pure noise; their spread
    shrinks with more points: 16 give about +-25 %), 0 when all values are equal.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> 0.5e-8 < estimate_noise(1.0 + 1e-8 * rng.standard_normal(16)) < 2e-8
    True
    """
    f = np.asarray(values, dtype=np.float64)
    if f.ndim != 1 or f.size < 4:
        raise ValueError(f"values: expected at least 4 values in a 1-D sequence, got shape {f.shape}")
    sigmas = []
    diff = f
    for k in range(1, min(6, f.size - 2) + 1):
        diff = np.diff(diff)
        if k >= 3:  # a curvature too small to matter in a derivative can still show in 2nd differences
            gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
            sigmas.append(_scaled_rms(diff) * math.sqrt(gamma))
    # Root mean square of the k-wise estimates, scaled like every mean of squares here: losses near 1e300 have
    # differences whose squares overflow float64, and an infinite noise would let any gradient pass.
    return _scaled_rms(np.array(sigmas))


def estimate_noise_rows(values: Any) -> F64:
    """:func:`estimate_noise` of each row of ``values`` (rows x equally spaced points), at once.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> rows = np.array([[1.0], [100.0]]) + np.array([[1e-8], [1e-6]]) * rng.standard_normal((2, 16))
    >>> sigma = estimate_noise_rows(rows)
    >>> bool(0.5e-8 < sigma[0] < 2e-8), bool(0.5e-6 < sigma[1] < 2e-6)
    (True, True)
    """
    f = np.asarray(values, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] < 4:
        raise ValueError(f"values: expected rows of at least 4 values, got shape {f.shape}")
    top = np.max(np.abs(f - f[:, :1]), axis=1, keepdims=True)
    scaled = np.divide(f - f[:, :1], top, out=np.zeros_like(f), where=top > 0)
    squares = []
    diff = scaled
    for k in range(1, min(6, f.shape[1] - 2) + 1):
        diff = np.diff(diff, axis=1)
        if k >= 3:
            gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
            squares.append(gamma * np.mean(diff * diff, axis=1))
    out: F64 = top[:, 0] * np.sqrt(np.mean(squares, axis=0))
    return out


def _scaled_rms(x: F64) -> float:
    """``sqrt(mean(x^2))`` without overflow or underflow in the squares (inf only when ``x`` holds inf or NaN)."""
    top = float(np.max(np.abs(x))) if x.size else 0.0
    if top == 0.0 or not math.isfinite(top):
        return top
    return top * math.sqrt(float(np.mean((x / top) ** 2)))


def gradient(
    f: Callable[[NDArray[Any]], float],
    x: Any,
    *,
    method: str = "central",
    eps: float | None = None,
    noise: float | None = None,
) -> Estimate:
    """Gradient of a scalar function of an array by finite differences, with error estimates.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``.
    x : float array
        The point (not modified: a working copy is perturbed).
    method : {"central", "forward", "richardson"}
    eps : float, optional
        Step base (see :func:`step_size`).
    noise : float, optional
        Bound on the rounding error of one value of ``f``; 4 x the standard deviation measured by
        :func:`noise_at` when not given.

    Examples
    --------
    >>> g = gradient(lambda v: float(np.sum(v**3)), np.array([1.0, 2.0]), method="richardson")
    >>> np.allclose(g.value, [3.0, 12.0], atol=1e-8), bool(np.all(g.error < 1e-6))
    (True, True)
    """
    x = check_array(x, name="x").copy()
    check_choice(method, name="method", allowed=METHODS)
    if noise is not None:
        noise = check_in_range(noise, name="noise", low=0.0, high=math.inf)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    flat = x.reshape(-1)
    h = step_size(flat, method=method, eps=eps)
    f0 = float(f(x))
    if noise is None:
        # noise_at gives a standard deviation; the formulas want a bound on each value's error: 4 sigma.
        noise = 4 * noise_at(f, x)

    def at(offset: NDArray[Any]) -> F64:
        out = np.empty(flat.size)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + offset[i]
            try:
                out[i] = float(f(x))
            finally:
                flat[i] = old
        return out

    h64 = h.astype(np.float64)
    if method == "forward":
        return _reshape(forward(f0, at(h), h64, noise=noise, f_plus2=at(2 * h)), x.shape)
    minus = flat - (flat - h)
    d1 = central(f0, at(h), at(-h), h64, minus.astype(np.float64), noise=noise)
    d2 = central(f0, at(2 * h), at(-2 * h), 2 * h64, noise=noise)
    if method == "central":
        # D(2h) - D(h) = h^2 f'''/2 + O(h^4), so the truncation h^2 |f'''| / 6 of D(h) is a third of it; twice
        # that leaves room for the higher orders. It is what the curvature term misses where f'' = 0 (tanh at 0:
        # a true error of 1.2e-11 was reported as 0).
        third = 2 * np.abs(d2.value - d1.value) / 3
        return _reshape(Estimate(d1.value, d1.error + third), x.shape)
    return _reshape(richardson(d1, d2, h64, noise=noise), x.shape)


def _reshape(e: Estimate, shape: tuple[int, ...]) -> Estimate:
    return Estimate(e.value.reshape(shape), e.error.reshape(shape))


def noise_at(f: Callable[[NDArray[Any]], float], x: NDArray[Any], *, points: int = 16, seed: int = 0) -> float:
    """Rounding noise of ``f`` near ``x``: ECnoise on ``points`` values along a random direction a few ulps long.

    Every coordinate moves by ``16 eps max(1, |x_i|)`` per step (so every part of the computation re-rounds), far
    too little for the smooth part of ``f`` to show in differences of order >= 2. Floored at ``eps |f(x)|``.
    ``x`` is restored bit for bit.

    Examples
    --------
    >>> noise_at(lambda v: float(np.sum(np.sin(v))), np.linspace(0, 1, 50)) < 1e-13
    True
    """
    machine = machine_epsilon(x.dtype)
    direction = np.random.default_rng(seed).choice([-1.0, 1.0], size=x.shape)
    direction *= 16 * machine * np.maximum(1.0, np.abs(x.astype(np.float64)))
    saved = x.copy()
    values = []
    try:
        for k in range(points):
            np.copyto(x, (saved.astype(np.float64) + k * direction).astype(x.dtype))
            values.append(float(f(x)))
    finally:
        np.copyto(x, saved)
    return max(estimate_noise(values), machine * abs(values[0]))
