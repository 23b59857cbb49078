"""The mean-field theory of signal propagation (Poole et al. 2016, Schoenholz et al. 2017): the expectations
``E[phi(h)^2]`` and ``E[phi'(h)^2]`` for ``h ~ N(0, q)``, and the saturated fraction of a layer's activations."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.nn.activations import ACTIVATIONS, sigmoid

__all__ = ["PHI", "mean_field", "saturated_fraction"]

A = NDArray[Any]
#: sqrt(2 / pi), the constant of GELU's tanh form.
_GELU_C = math.sqrt(2.0 / math.pi)


def _gelu(z: A) -> A:
    # The tanh form (JAX's default, approximate=True); the erf form differs by at most 4.7e-4 (at z = -2.70).
    out: A = 0.5 * z * (1.0 + np.tanh(_GELU_C * (z + 0.044715 * z**3)))
    return out


def _gelu_derivative(z: A, a: A) -> A:
    t = np.tanh(_GELU_C * (z + 0.044715 * z**3))
    out: A = 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * z**2)
    return out


def _silu(z: A) -> A:
    out: A = z * sigmoid(z)
    return out


def _silu_derivative(z: A, a: A) -> A:
    s = sigmoid(z)
    out: A = s * (1.0 + z * (1.0 - s))
    return out


def _elu(z: A) -> A:
    out: A = np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))
    return out


def _elu_derivative(z: A, a: A) -> A:
    out: A = np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0)))
    return out


def _softplus(z: A) -> A:
    out: A = np.logaddexp(0.0, z)
    return out


def _softplus_derivative(z: A, a: A) -> A:
    return sigmoid(z)


#: ``name -> (phi, phi'(z, a))`` for every activation the recursion knows: the reference network's five, and the
#: ReLU-like ones JAX and torch models use (GELU, SiLU = swish, ELU, softplus), which a model adapter can name.
PHI: dict[str, tuple[Callable[[A], A], Callable[[A, A], A]]] = {
    **{name: (a.forward, a.derivative) for name, a in ACTIVATIONS.items()},
    "gelu": (_gelu, _gelu_derivative),
    "silu": (_silu, _silu_derivative),
    "elu": (_elu, _elu_derivative),
    "softplus": (_softplus, _softplus_derivative),
}


#: Grids for E[f(h)], h ~ N(0, q), by the trapezoid rule: one fixed in h where the activations bend (|h| <= 20),
#: one scaled with sqrt(q) over +-10 standard deviations, so a wide Gaussian (q ~ 500) still resolves the narrow
#: spike of tanh' and a narrow one (q ~ 1e-60) is sampled by 2000 points. Even counts keep 0 off the grid, so the
#: ReLU step falls inside one cell and is integrated to first order. Relative error ~1e-5 (closed forms).
_FIXED_GRID = np.linspace(-20.0, 20.0, 4000)
_UNIT_GRID = np.linspace(-10.0, 10.0, 2000)
#: Below this variance the Gaussian is taken as this narrow one (the limit q -> 0 of the expectations).
_TINY_Q = 1e-300


def mean_field(activation: str, q: float) -> tuple[float, float]:
    """``(E[phi(h)^2], E[phi'(h)^2])`` for ``h ~ N(0, q)``, by the trapezoid rule on the union of a fixed grid and
    one scaled to ``sqrt(q)`` (kinks such as ReLU's at 0 sit on grid points): within 1e-4 of the closed forms for
    ReLU and linear, and of Monte Carlo for tanh and sigmoid (tests/test_propagation.py).

    Examples
    --------
    >>> [round(v, 6) for v in mean_field("relu", 2.0)]
    [1.0, 0.5]
    """
    forward, derivative = PHI[activation]
    q = max(float(q), _TINY_Q)
    h = np.union1d(_FIXED_GRID, math.sqrt(q) * _UNIT_GRID)
    # Zero from 10 standard deviations on (the scaled grid ends there), so the wide cells of the fixed grid
    # carry no stray mass when the Gaussian is far narrower than they are.
    density = np.where(np.abs(h) < 10.0 * math.sqrt(q), np.exp(-h * h / (2 * q)), 0.0)
    a = forward(h)
    values = np.stack([density, a * a * density, derivative(h, a) ** 2 * density])
    integrals = ((values[:, 1:] + values[:, :-1]) * np.diff(h)).sum(axis=1)
    return float(integrals[1] / integrals[0]), float(integrals[2] / integrals[0])


def saturated_fraction(activation: str, a: A, level: float = 0.99) -> float | None:
    """Fraction of a bounded activation's outputs beyond ``level`` of its range (None for unbounded ones).

    tanh counts ``|a| > level``; sigmoid counts ``|2a - 1| > level``, the same in its (0, 1) range.

    Examples
    --------
    >>> saturated_fraction("tanh", np.tanh(np.array([0.1, 5.0]))), saturated_fraction("relu", np.ones(3))
    (0.5, None)
    """
    name = activation
    if name == "tanh":
        return float(np.mean(np.abs(a) > level))
    if name == "sigmoid":
        return float(np.mean(np.abs(2 * a.astype(np.float64) - 1) > level))
    return None
