"""Weight initialization: one core, :func:`variance_scaling`, named schemes as one-line specializations (LeCun 1/n,
He 2/n, Glorot 2/(n_in + n_out), ...), the gain of each nonlinearity, and data-driven LSUV.

Examples
--------
>>> from preflight import init
>>> init.he_normal(0, (64, 128)).std().round(2)  # sqrt(2 / 128)
np.float64(0.13)
"""

from __future__ import annotations

from preflight.init.layer_sequential import LSUVLayer, LSUVResult, LSUVWarning, lsuv
from preflight.init.report import InitializationReport, LayerInit
from preflight.init.schemes import (
    DEFAULT_LEAKY_SLOPE,
    DISTRIBUTIONS,
    MODES,
    NONLINEARITIES,
    SCHEMES,
    TRUNCATED_STD,
    Initializer,
    as_generator,
    constant,
    fans,
    gain,
    get,
    glorot_normal,
    glorot_uniform,
    he,
    he_normal,
    he_uniform,
    identity,
    kaiming_normal,
    kaiming_uniform,
    lecun_normal,
    lecun_uniform,
    normal,
    orthogonal,
    truncated_normal,
    uniform,
    variance_scaling,
    xavier_normal,
    xavier_uniform,
    zeros,
)

__all__ = [
    "DEFAULT_LEAKY_SLOPE",
    "DISTRIBUTIONS",
    "MODES",
    "NONLINEARITIES",
    "SCHEMES",
    "TRUNCATED_STD",
    "InitializationReport",
    "Initializer",
    "LSUVLayer",
    "LSUVResult",
    "LSUVWarning",
    "LayerInit",
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
    "lsuv",
    "normal",
    "orthogonal",
    "truncated_normal",
    "uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]
