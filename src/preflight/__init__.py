"""preflight: get a neural network ready to train, and prove it.

Normalize inputs, initialize weights, diagnose vanishing/exploding signals, and check gradients. The core needs
NumPy only; plotting, scikit-learn data sets, PyTorch and dask are optional extras.
"""

from __future__ import annotations

from preflight import data, init, lsuv, nn, propagation
from preflight.gradcheck import gradcheck
from preflight.nn import Network
from preflight.normalize import NotFittedError, Standardizer

__all__ = [
    "Network",
    "NotFittedError",
    "Standardizer",
    "__version__",
    "data",
    "gradcheck",
    "init",
    "lsuv",
    "nn",
    "propagation",
]

__version__ = "0.1.0"
