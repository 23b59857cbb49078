"""Kink or bug in float32 (issue #12): a correct ReLU network with kinks packed inside the step passes, and what it
sets aside is really a kink; one wrong element hiding among those kinks is caught and named.

float32's step (cbrt(eps) = 4.9e-3) is wide enough that, at batch 256, several samples of a ReLU unit cross their
kink inside it for many weights: their central differences sit tens of noise units (sigma / h) from the correct
analytic value. The verdict may set such a coordinate aside only where it sees a kink (the loss sampled along the
coordinate, :mod:`preflight.check.dense`); a coordinate whose loss is a smooth line is judged, whatever the kinks
of its neighbours.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from preflight.check import numdiff
from preflight.check.dense import GRID, closer_look
from preflight.nn import Network
from preflight.nn.fast_check import check_network

SIZES = [16, 32, 32, 10]
BATCH = 256


def relu_net(seed: int) -> tuple[Network, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The README's float32 ReLU network (He init, small noise on every parameter), at batch 256."""
    net = Network(SIZES, hidden="relu", output="softmax")
    rng = np.random.default_rng(seed)
    params = net.init(rng, "he", dtype="float32")
    params = {k: (v + 0.05 * rng.standard_normal(v.shape)).astype("float32") for k, v in params.items()}
    X = rng.standard_normal((BATCH, SIZES[0]))
    y = rng.integers(0, SIZES[-1], BATCH)
    return net, params, X, y


def kink_within_step(net: Network, params: dict[str, np.ndarray], X: np.ndarray, name: str, index: Any) -> bool:
    """Whether some hidden unit of some sample changes side of its ReLU kink as the coordinate moves over [-2h, 2h]
    (h float32's step for it), computed in float64: the kink the verdict says it saw is really there."""
    theta = float(params[name][index])
    h = float(numdiff.step_size(np.array([theta], dtype=np.float32))[0])
    masks = []
    for move in np.linspace(-2 * h, 2 * h, 65):
        moved = {k: v.astype(np.float64) for k, v in params.items()}
        moved[name][index] += move
        trace = net.trace(moved, X.astype(np.float64))
        masks.append(np.concatenate([(z > 0).ravel() for z in trace.logits[:-1]]))
    return any(not np.array_equal(masks[0], m) for m in masks[1:])


# Seed 12 holds a coordinate whose point sits between two kinks 0.06 h apart (a piece of four grid steps, whose own
# slope no fit of the loss reads): it was a false alarm before the closer look located kinks (preflight.check.hinges).
@pytest.mark.parametrize("seed", [0, 1, 12])
def test_a_correct_float32_relu_net_at_batch_256_passes_and_every_coordinate_set_aside_is_a_kink(seed: int) -> None:
    net, params, X, y = relu_net(seed)
    report = check_network(net, params, X, y)
    assert report.passed, report
    excused = report.kinks
    assert excused, "the float32 step at batch 256 holds kinks: some coordinates must be set aside"
    judged = sum(r.checked for r in report.parameters.values())
    total = sum(r.size for r in report.parameters.values())
    assert judged >= 0.9 * total  # set aside are the few with a kink seen, not a share of a tensor
    for name, c in excused:
        assert kink_within_step(net, params, X, name, c.index), (name, c)


@pytest.mark.parametrize("seed", [0, 1])
def test_one_wrong_element_hiding_among_kinks_is_caught_and_named(seed: int) -> None:
    net, params, X, y = relu_net(seed)
    noise = check_network(net, params, X, y).noise  # sigma of one loss value, as the check measures it
    truth = net.gradients({k: v.astype(np.float64) for k, v in params.items()}, X.astype(np.float64), y)["W2"]
    h = numdiff.step_size(params["W2"]).astype(np.float64)
    size = np.abs(truth) / (noise / h)  # what forgetting the element costs, in noise units sigma / h
    # The wrong element: of W2's elements whose own step holds a kink, the one with the largest true gradient below
    # 60 sigma / h, the blur of the kinks around it (the backward "forgets" it, as a hand-written loop that stops one
    # short). Before the closer look, every such element of these nets was set aside as a kink.
    element = next(
        np.unravel_index(int(i), truth.shape)
        for i in np.argsort(-np.where(size < 60, size, 0.0), axis=None)
        if kink_within_step(net, params, X, "W2", np.unravel_index(int(i), truth.shape))
    )
    assert size[element] > 30  # a bug of relative size 1e-3 or more in these nets sits here (tests/layers/parked.py)
    grads = net.gradients(params, X, y)
    grads["W2"][element] = 0.0
    report = check_network(net, params, X, y, grads=grads)
    assert not report.passed
    assert [n for n, r in report.parameters.items() if not r.passed] == ["W2"]
    assert report.parameters["W2"].worst[0].index == tuple(int(i) for i in element)


def test_the_closer_look_excuses_a_kink_it_sees_and_judges_a_smooth_line() -> None:
    h = np.full(3, 1e-2)
    x = {k: k * h for k in (0.0, *GRID)}
    rng = np.random.default_rng(1)
    sigma = 1e-7

    def f(v: np.ndarray) -> np.ndarray:
        # relu at the point (autograd says 0 there); x + x^2 (smooth); two kinks 0.1 h either side of the point
        bump = np.maximum(0.0, np.abs(v[2]) - 1e-3) * -0.05
        return np.array([max(v[0], 0.0), v[1] + v[1] ** 2, 0.3 * v[2] + bump])

    values = {k: f(v) + rng.normal(0, sigma, 3) for k, v in x.items()}
    analytic = np.array([0.0, 1.0 + 0.001, 0.3])  # the smooth one carries a bug of 0.1 %
    look = closer_look(values, x, h, analytic, np.zeros(3), sigma)
    assert look.kink.tolist() == [True, False, True]
    assert abs(analytic[1] - look.numeric[1]) > look.tolerance[1]  # the bug is a smooth line, judged and failed


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_wrong_elements_beside_kinks_are_caught_not_excused(seed: int) -> None:
    """Every W2 element 15 to 60 sigma / h large whose step holds a kink, forgotten by the backward one at a time: the
    second look's kink rule (seven values) excused most of them; the closer look, locating the kinks, overrules it
    where the analytic value is off every slope the point's piece could have. Measured over 16 nets: 376 of 467
    caught and named (seeds 0-7: 191 of 240, 148 before), the rest beside kinks near the point; no false alarm."""
    net, params, X, y = relu_net(seed)
    noise = check_network(net, params, X, y).noise
    truth = net.gradients({k: v.astype(np.float64) for k, v in params.items()}, X.astype(np.float64), y)["W2"]
    h = numdiff.step_size(params["W2"]).astype(np.float64)
    size = np.abs(truth) / (noise / h)
    elements = [
        e
        for e in (np.unravel_index(int(i), truth.shape) for i in np.flatnonzero((size >= 15) & (size <= 60)))
        if kink_within_step(net, params, X, "W2", e)
    ][:30]
    caught = 0
    for element in elements:
        grads = net.gradients(params, X, y)
        grads["W2"][element] = 0.0
        report = check_network(net, params, X, y, grads=grads)
        failing = [n for n, r in report.parameters.items() if not r.passed]
        assert failing in ([], ["W2"]), (element, failing)  # never a correct tensor blamed
        caught += failing == ["W2"]
    assert len(elements) == 30
    assert caught >= 0.55 * len(elements), caught  # measured 19 and 27 of 30 (12 and 20 before)
