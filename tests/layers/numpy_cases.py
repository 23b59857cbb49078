"""Cases for the NumPy checker ``preflight.gradcheck(loss, params, grads)``.

A hand-written MLP backward (tanh, softmax cross-entropy, L2), correct and with bugs from large to tiny (the L2
term's gradient forgotten: its size follows lambda); float64 parameters with a loss computed in float32 (issue item
4); and checks where nothing can be judged (issue item 5): no parameter at all, parameters of +-1e-300, an
integer-valued loss. Those may pass only if the report says it judged most coordinates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .registry import Case, NumpyCall, register

SIZES = (8, 16, 4)
M = 32


def mlp_data(dtype: str, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1000 * seed + 60)
    n_in, hidden, classes = SIZES
    params = {
        "W1": rng.standard_normal((hidden, n_in)) / np.sqrt(n_in),
        "b1": 0.1 * rng.standard_normal((hidden, 1)),
        "W2": rng.standard_normal((classes, hidden)) / np.sqrt(hidden),
        "b2": 0.1 * rng.standard_normal((classes, 1)),
    }
    X = rng.standard_normal((n_in, M))
    Y = np.eye(classes)[:, rng.integers(0, classes, M)]
    return {k: v.astype(dtype) for k, v in params.items()}, X.astype(dtype), Y.astype(dtype)


def mlp_loss(p: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray, lam: float) -> float:
    A1 = np.tanh(p["W1"] @ X + p["b1"])
    Z2 = p["W2"] @ A1 + p["b2"]
    Z2 = Z2 - Z2.max(axis=0, keepdims=True)
    log_p = Z2 - np.log(np.exp(Z2).sum(axis=0, keepdims=True))
    l2 = lam / 2 * (np.sum(p["W1"] ** 2) + np.sum(p["W2"] ** 2))
    return float(-np.sum(Y * log_p) / X.shape[1] + l2)


def mlp_grads(p: dict[str, np.ndarray], X: np.ndarray, Y: np.ndarray, lam: float, bug: str = "") -> dict[str, Any]:
    m = X.shape[1]
    A1 = np.tanh(p["W1"] @ X + p["b1"])
    Z2 = p["W2"] @ A1 + p["b2"]
    E = np.exp(Z2 - Z2.max(axis=0, keepdims=True))
    dZ2 = (E / E.sum(axis=0, keepdims=True) - Y) / m
    l2 = 0.0 if bug == "l2-forgotten" else lam
    dW2, db2 = dZ2 @ A1.T + l2 * p["W2"], dZ2.sum(axis=1, keepdims=True)
    if bug == "bias-not-averaged":
        db2 = db2 * m
    dZ1 = (p["W2"].T @ dZ2) * (1 - A1 if bug == "tanh-derivative" else 1 - A1**2)
    return {"W1": dZ1 @ X.T + l2 * p["W1"], "b1": dZ1.sum(axis=1, keepdims=True), "W2": dW2, "b2": db2}


def mlp_case(bug: str = "", text: str = "", lam: float = 1e-3) -> Case:
    def build(dtype: str, seed: int) -> NumpyCall:
        params, X, Y = mlp_data(dtype, seed)
        p64, X64, Y64 = mlp_data("float64", seed)
        grads = mlp_grads(params, X, Y, lam, bug)
        return NumpyCall(lambda p: mlp_loss(p, X, Y, lam), params, grads, mlp_grads(p64, X64, Y64, lam))

    name = "numpy-mlp" + (f"/{bug}" if bug else "") + (f"-{lam:g}" if bug == "l2-forgotten" else "")
    return register(Case(name, "numpy", "NumPy MLP 8-16-4 (tanh, softmax CE)", build, "fail" if bug else "pass", text))


mlp_case()
mlp_case("tanh-derivative", "tanh' written 1 - a instead of 1 - a^2")
mlp_case("bias-not-averaged", "db2 summed over the batch, the 1/m forgotten")
for _lam in (1e-2, 1e-4, 1e-6, 1e-7):
    mlp_case("l2-forgotten", f"the L2 term's gradient lambda W forgotten (lambda = {_lam:g})", _lam)


# -- float64 parameters, a loss computed in float32 (issue item 4) ---------------------------------------------------


def mixed_precision(factor: float) -> Any:
    def build(dtype: str, seed: int) -> NumpyCall:
        rng = np.random.default_rng(1000 * seed + 61)
        A, b = rng.standard_normal((30, 20)), rng.standard_normal(30)
        w = rng.standard_normal(20)
        A32, b32 = A.astype(np.float32), b.astype(np.float32)

        def loss(p: dict[str, np.ndarray]) -> float:
            return float(np.sum((A32 @ p["w"].astype(np.float32) - b32) ** 2))

        true = {"w": 2 * A.T @ (A @ w - b)}
        return NumpyCall(loss, {"w": w}, {"w": factor * true["w"]}, true)

    return build


MP = "quadratic, float64 params, float32 loss"
register(Case("mixed-precision", "numpy", MP, mixed_precision(1.0), "pass", dtypes=("float64",)))
register(
    Case(
        "mixed-precision/2%",
        "numpy",
        MP,
        mixed_precision(1.02),
        "fail",
        "the gradient 2 % too large (issue item 4)",
        dtypes=("float64",),
    )
)


# -- nothing (or next to nothing) to judge (issue item 5) ------------------------------------------------------------


def empty(dtype: str, seed: int) -> NumpyCall:
    return NumpyCall(lambda p: float(np.sum(p["w"])) + 1.0, {"w": np.zeros(0, dtype)}, {"w": np.zeros(0, dtype)}, None)


def tiny(bug: bool) -> Any:
    def build(dtype: str, seed: int) -> NumpyCall:
        rng = np.random.default_rng(1000 * seed + 62)
        w = rng.choice([-1e-300, 1e-300], size=(4, 5))
        c = 0.5 + rng.random((4, 5)) if bug else np.zeros((4, 5))

        def loss(p: dict[str, np.ndarray]) -> float:
            return float(np.sum(p["w"] ** 2 + c * p["w"]))

        true = 2 * w + c
        return NumpyCall(loss, {"w": w}, {"w": true + c}, {"w": true})

    return build


def integer_valued(factor: float) -> Any:
    def build(dtype: str, seed: int) -> NumpyCall:
        w = 1e5 * np.random.default_rng(1000 * seed + 63).standard_normal(20)
        return NumpyCall(lambda p: float(np.round(np.sum(p["w"] ** 2))), {"w": w}, {"w": factor * 2 * w}, {"w": 2 * w})

    return build


NT = "nothing to judge"
register(Case("empty-params", "numpy", NT, empty, "no-hollow-pass", notes='{"w": np.zeros(0)}'))
register(
    Case(
        "tiny-params", "numpy", NT, tiny(False), "no-hollow-pass", dtypes=("float64",),
        notes="params +-1e-300, loss sum(w^2), grads 2w: correct, but a pass must have judged them",
    )
)  # fmt: skip
register(
    Case(
        "tiny-params/linear-term-doubled", "numpy", NT, tiny(True), "fail", dtypes=("float64",),
        bug="params +-1e-300, loss sum(w^2 + c w): the c w term's gradient doubled",
    )
)  # fmt: skip
register(
    Case(
        "integer-loss", "numpy", NT, integer_valued(1.0), "no-hollow-pass", dtypes=("float64",),
        notes="loss round(sum(w^2)) with |w| ~ 1e5, grads 2w",
    )
)  # fmt: skip
register(
    Case(
        "integer-loss/10%", "numpy", NT, integer_valued(1.1), "fail", dtypes=("float64",),
        bug="loss round(sum(w^2)) with |w| ~ 1e5, grads 2.2w",
    )
)  # fmt: skip
