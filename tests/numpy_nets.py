"""Learner-style NumPy networks in float32 (ReLU or tanh hidden layers, a sigmoid output, cross-entropy and L2), with
the backward written by hand as the course writes it, correct or with a realistic bug.

Used by tests/test_pooled_look.py and benchmarks/numpy_float32_bugs.py: what float32 differences resolve in a plain
NumPy check (no float64 copy: the gradient comes as arrays).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The bugs, each as the course's backward would carry it; "" is the correct backward.
BUGS = {
    "": "correct",
    "l2-forgotten": "the L2 term's gradient left out",
    "db-not-averaged": "the output bias's gradient not divided by m",
    "constant-2e-3": "dW1 off by a factor 1.002 (a wrong constant)",
    "one-element": "one element of dW2 off by 5 %",
    "b1-scaled": "db1 off by a factor 0.99",
    "tanh-derivative": "tanh' written as 1 - a instead of 1 - a^2",
}
#: The tensors each bug is in (None: every weight).
WHERE = {"l2-forgotten": None, "db-not-averaged": "b", "constant-2e-3": "W1", "one-element": "W2", "b1-scaled": "b1",
         "tanh-derivative": None}  # fmt: skip


def make(seed: int, dims: tuple[int, ...], m: int, dtype: str = "float32") -> tuple[dict[str, Any], Any, Any]:
    """He-initialized parameters, inputs ``(dims[0], m)`` and 0/1 labels ``(1, m)``."""
    rng = np.random.default_rng(seed)
    p: dict[str, Any] = {}
    for layer in range(1, len(dims)):
        scale = np.sqrt(2 / dims[layer - 1])
        p[f"W{layer}"] = (rng.standard_normal((dims[layer], dims[layer - 1])) * scale).astype(dtype)
        p[f"b{layer}"] = (0.1 * rng.standard_normal((dims[layer], 1))).astype(dtype)
    X = rng.standard_normal((dims[0], m)).astype(dtype)
    Y = (rng.random((1, m)) < 0.5).astype(dtype)
    return p, X, Y


def forward(p: dict[str, Any], X: Any, act: str) -> tuple[Any, list[tuple[Any, Any]]]:
    """The output and every layer's (Z, A)."""
    depth = len(p) // 2
    A, cache = X, [(None, X)]
    for layer in range(1, depth + 1):
        Z = p[f"W{layer}"] @ A + p[f"b{layer}"]
        A = 1 / (1 + np.exp(-Z)) if layer == depth else (np.maximum(Z, 0) if act == "relu" else np.tanh(Z))
        cache.append((Z, A))
    return A, cache


def loss(p: dict[str, Any], X: Any, Y: Any, act: str, lam: float) -> float:
    """Cross-entropy over the batch plus ``lam / (2 m)`` times the squared weights."""
    A, _ = forward(p, X, act)
    m = X.shape[1]
    l2 = lam / (2 * m) * sum(np.sum(p[k] ** 2) for k in p if k.startswith("W"))
    return float(-np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A)) / m + l2)


def grads(p: dict[str, Any], X: Any, Y: Any, act: str, lam: float, bug: str = "") -> dict[str, Any]:
    """The backward, as the course writes it, with ``bug`` (a key of :data:`BUGS`)."""
    depth, m = len(p) // 2, X.shape[1]
    A, cache = forward(p, X, act)
    dZ = A - Y
    g: dict[str, Any] = {}
    for layer in range(depth, 0, -1):
        reg = 0 if bug == "l2-forgotten" else lam / m
        g[f"W{layer}"] = dZ @ cache[layer - 1][1].T / m + reg * p[f"W{layer}"]
        g[f"b{layer}"] = np.sum(dZ, axis=1, keepdims=True) / (1 if bug == "db-not-averaged" and layer == depth else m)
        if bug == "constant-2e-3" and layer == 1:
            g["W1"] = g["W1"] * g["W1"].dtype.type(1.002)
        if bug == "one-element" and layer == 2:
            g["W2"] = g["W2"].copy()
            g["W2"].flat[3] *= g["W2"].dtype.type(1.05)
        if bug == "b1-scaled" and layer == 1:
            g["b1"] = g["b1"] * g["b1"].dtype.type(0.99)
        if layer > 1:
            Z, A_prev = cache[layer - 1]
            dA = p[f"W{layer}"].T @ dZ
            if act == "relu":
                dZ = dA * (Z > 0)
            else:
                dZ = dA * ((1 - A_prev) if bug == "tanh-derivative" else (1 - A_prev**2))
    return g


def train(p: dict[str, Any], X: Any, Y: Any, act: str, lam: float, steps: int, rate: float = 0.1) -> dict[str, Any]:
    """``p`` after ``steps`` of full-batch gradient descent with the correct backward, in the parameters' dtype."""
    for _ in range(steps):
        g = grads(p, X, Y, act, lam)
        p = {k: (v - v.dtype.type(rate) * g[k]).astype(v.dtype) for k, v in p.items()}
    return p


def relative_size(g: dict[str, Any], truth: dict[str, Any]) -> float:
    """``||g - truth|| / ||truth||`` over every tensor, in float64."""
    num = sum(float(np.sum((g[k].astype(np.float64) - truth[k]) ** 2)) for k in truth)
    den = sum(float(np.sum(truth[k] ** 2)) for k in truth)
    return float(np.sqrt(num / den))
