"""Plain oracles and data helpers for the tests (deliberately simple, independent of preflight's checker)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def central_differences(
    cost: Callable[[dict[str, np.ndarray]], float], params: dict[str, np.ndarray], eps: float
) -> dict[str, np.ndarray]:
    """Two-sided finite differences of ``cost`` at ``params``, in float64, coordinate by coordinate.

    A deliberately plain oracle for the foundation tests (the real checker lives in preflight.gradcheck).
    """
    work = {k: v.astype(np.float64) for k, v in params.items()}
    out = {}
    for name, value in work.items():
        grad = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            old = value[idx]
            value[idx] = old + eps
            plus = cost(work)
            value[idx] = old - eps
            minus = cost(work)
            value[idx] = old
            grad[idx] = (plus - minus) / (2 * eps)
        out[name] = grad
    return out


def relative_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """The course's metric ||a - b|| / (||a|| + ||b||) over all entries, in float64."""
    fa = np.concatenate([np.ravel(a[k]).astype(np.float64) for k in sorted(a)])
    fb = np.concatenate([np.ravel(b[k]).astype(np.float64) for k in sorted(a)])
    return float(np.linalg.norm(fa - fb) / (np.linalg.norm(fa) + np.linalg.norm(fb)))


def labels_for(output: str, m: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Valid targets for a head: 0/1 for sigmoid, class indices for softmax, reals for linear."""
    if output == "sigmoid":
        return rng.integers(0, 2, size=(m,) if k == 1 else (m, k))
    if output == "softmax":
        return rng.integers(0, k, size=m)
    return rng.standard_normal((m,) if k == 1 else (m, k))
