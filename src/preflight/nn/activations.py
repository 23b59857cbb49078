"""Hidden-layer activations: each forward sits next to its derivative (micrograd style).

``derivative(z, a)`` receives both the pre-activation ``z`` and the activation ``a = phi(z)`` so each can use the
cheaper one (tanh' = 1 - a^2, sigmoid' = a(1 - a)). At a ReLU kink (z = 0) the derivative is taken as 0.
``second_derivative(z, a)`` is phi'' (what the R-operator of :mod:`preflight.nn.hessian` needs): 0 for the piecewise
linear ones, as autograd's double backward takes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ACTIVATIONS", "LEAKY_SLOPE", "Activation", "sigmoid"]

A = NDArray[Any]
#: Slope of leaky ReLU for negative inputs (PyTorch's default negative_slope).
LEAKY_SLOPE = 0.01


def sigmoid(z: A) -> A:
    """Logistic function without overflow: exp is only ever taken of non-positive numbers.

    Examples
    --------
    >>> sigmoid(np.array([-1000.0, 0.0, 1000.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity and its derivative."""

    name: str
    forward: Callable[[A], A]
    derivative: Callable[[A, A], A]
    second_derivative: Callable[[A, A], A]


def _relu(z: A) -> A:
    return np.maximum(z, 0)


def _relu_derivative(z: A, a: A) -> A:
    return (z > 0).astype(z.dtype)


def _leaky_relu(z: A) -> A:
    return np.where(z > 0, z, z * z.dtype.type(LEAKY_SLOPE))


def _leaky_relu_derivative(z: A, a: A) -> A:
    out: A = np.where(z > 0, z.dtype.type(1), z.dtype.type(LEAKY_SLOPE))
    return out


def _tanh_derivative(z: A, a: A) -> A:
    return 1 - a * a


def _tanh_second(z: A, a: A) -> A:
    out: A = -2 * a * (1 - a * a)
    return out


def _sigmoid_derivative(z: A, a: A) -> A:
    out: A = a * (1 - a)
    return out


def _sigmoid_second(z: A, a: A) -> A:
    out: A = a * (1 - a) * (1 - 2 * a)
    return out


def _identity(z: A) -> A:
    return z


def _ones(z: A, a: A) -> A:
    return np.ones_like(z)


def _zeros(z: A, a: A) -> A:
    return np.zeros_like(z)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", _relu, _relu_derivative, _zeros),
    "leaky_relu": Activation("leaky_relu", _leaky_relu, _leaky_relu_derivative, _zeros),
    "tanh": Activation("tanh", np.tanh, _tanh_derivative, _tanh_second),
    "sigmoid": Activation("sigmoid", sigmoid, _sigmoid_derivative, _sigmoid_second),
    "linear": Activation("linear", _identity, _ones, _zeros),
}
