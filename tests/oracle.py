"""Plain oracles and data helpers for the tests (deliberately simple, independent of preflight's checker)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from preflight.nn import Network


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


def network_problem(
    net: Network, dtype: Any, seed: int, m: int, *, init: str
) -> tuple[dict[str, np.ndarray], np.ndarray, Any, Any]:
    """Parameters (``init`` plus a little noise), a batch of m rows, its targets and, with dropout, frozen masks."""
    rng = np.random.default_rng(seed)
    params = net.init(rng, init, dtype=dtype)
    # Nonzero biases and a little noise: no unit sits exactly at its kink by construction.
    params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(dtype) for k, v in params.items()}
    X = rng.standard_normal((m, net.sizes[0]))
    y = labels_for(net.output, m, net.sizes[-1], rng)
    masks = net.dropout_masks(rng, m) if net.keep_prob < 1 else None
    return params, X, y, masks


def torch_cost(net: Network, X: np.ndarray, Y: np.ndarray, masks: Any) -> Any:
    """The reference network's cost written in torch (rows layout), for torch.autograd.functional.hvp."""
    import torch
    import torch.nn.functional as F

    phi = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "linear": lambda t: t,
           "leaky_relu": lambda t: F.leaky_relu(t, 0.01)}  # fmt: skip
    names = list(net.shapes())

    def cost(*values: Any) -> Any:
        p = dict(zip(names, values, strict=True))
        a, m = torch.from_numpy(X), X.shape[0]
        for layer in range(1, net.depth + 1):
            z = a @ p[f"W{layer}"].T + p[f"b{layer}"]
            if layer < net.depth:
                a = phi[net.hidden[layer - 1]](z)
                if masks is not None:
                    a = a * torch.from_numpy(masks[layer - 1].astype(np.float64)) / net.keep_prob
        y = torch.from_numpy(Y)
        if net.output == "sigmoid":
            data = F.binary_cross_entropy_with_logits(z, y, reduction="sum") / m
        elif net.output == "softmax":
            data = -(y * torch.log_softmax(z, 1)).sum() / m
        else:
            data = 0.5 * ((z - y) ** 2).sum() / m
        return data + net.l2 / (2 * m) * sum((p[f"W{k}"] ** 2).sum() for k in range(1, net.depth + 1))

    return cost
