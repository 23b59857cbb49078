"""The random generator argument every preflight function takes: a Generator, a legacy RandomState, or a seed."""

from __future__ import annotations

import numpy as np

from preflight._util.aliases import RngLike
from preflight._util.validation import describe

__all__ = ["as_generator"]


def as_generator(rng: RngLike, *, name: str = "rng") -> np.random.Generator | np.random.RandomState:
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
    raise ValueError(f"{name}: expected a numpy Generator, RandomState or a non-negative int seed, got {describe(rng)}")
