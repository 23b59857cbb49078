"""The noise probe (preflight.check.inputs.measure_noise) tells a float64 loss with a small gradient from a loss that
computes in float32 behind float64 parameters (issue #12, item 4).

Both can come back equal at moves of a few float64 ulps. A float64 loss of a trained network moves at 2^13 ulps,
below anything float32 resolves, and its own rounding is measured there; a loss that casts to float32 inside stays
exactly equal there too and gets float32's noise. Taken for a float32 loss, the trained network's float64 check read
kinks as noise (1.1e-8 for a noise of 2e-17) and passed a 2e-3 error in W1.
"""

from __future__ import annotations

import numpy as np

from preflight import gradcheck
from preflight.check.inputs import measure_noise, parameter_leaves
from preflight.check.perturb import BlackBoxLoss

from .numpy_nets import grads, loss, make, train

EPS32 = float(np.finfo(np.float32).eps)


def trained() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A float32 ReLU network trained 1000 steps, widened to float64 (its 16-ulp probe is flat in steps)."""
    p, X, Y = make(16, (20, 32, 16, 1), 256)
    p = train(p, X, Y, "relu", 0.7, 1000)
    return {k: v.astype(np.float64) for k, v in p.items()}, X.astype(np.float64), Y.astype(np.float64)


def noise(f: object, params: dict[str, np.ndarray]) -> tuple[float, float, float]:
    leaves = parameter_leaves(params)
    box = BlackBoxLoss(f, params, leaves)
    f0 = box.value()
    sigma, eps = measure_noise(box.value, leaves, f0, 0, box.output_epsilon)
    return sigma, eps, f0


def test_a_float64_loss_too_flat_for_its_ulps_keeps_float64_noise_and_its_check_resolves_a_small_bug() -> None:
    p, X, Y = trained()
    f = lambda q: loss(q, X, Y, "relu", 0.7)  # noqa: E731
    sigma, eps, f0 = noise(f, p)
    assert eps == np.finfo(np.float64).eps and sigma < 1e-15 * abs(f0)
    assert gradcheck(f, p, grads(p, X, Y, "relu", 0.7)).passed
    report = gradcheck(f, p, grads(p, X, Y, "relu", 0.7, "constant-2e-3"))
    assert not report.passed and not report.parameters["W1"].passed


def test_a_loss_that_casts_to_float32_behind_float64_parameters_gets_float32_noise() -> None:
    w = np.random.default_rng(0).normal(size=20)
    f = lambda q: float(np.sum(q["w"].astype(np.float32) ** 2))  # noqa: E731
    sigma, eps, f0 = noise(f, {"w": w})
    assert eps == EPS32 and sigma >= 0.05 * EPS32 * abs(f0)
    assert gradcheck(f, {"w": w}, {"w": 2 * w}).passed
    assert not gradcheck(f, {"w": w}, {"w": 2.04 * w}).passed  # 2 %: not excused as kinks
