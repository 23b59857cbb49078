"""The rounding noise of a backward, as the second-order check differences it: read at the scale of its steps too.

``check_function`` measures each output's noise along a probe that moves every input element by a few ulps
(:meth:`preflight.torch._function_check.FunctionCheck.measure_noise`). A backward often holds an intermediate with
cancellation, ``1 - tanh(z)^2`` or ``s (1 - s)``, whose absolute rounding is an ulp of 1 while its value is small:
through a saturated ``tanh`` (z = 4.7), ``tanh(z)`` moves by 3e-4 of a move of z, so a probe of a few ulps leaves it
on the same floating-point value and reads none of its rounding, while the differences, at steps of ``cbrt(eps)``,
move it through many ulps and carry all of it. :class:`BackwardCheck` probes a second time with moves of ``h / 4``
per element (:data:`PROBE_FRACTION`: 16 positions spanning about the differences' own span, 4h) and keeps, per output,
the larger of the two readings; that second reading takes the median of the squared differences
(:func:`robust_noise_rows`), so a probe that crosses one jump of the backward (a ReLU's kink) does not read the jump
as noise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from preflight.check import numdiff
from preflight.torch._function_check import FunctionCheck

__all__ = ["PROBE_FRACTION", "BackwardCheck", "robust_noise_rows"]

F64 = NDArray[np.float64]
#: The wide probe moves each element by its step h over this: 16 positions span 3.75 h, about the +-2h the
#: differences span. Narrower is not enough in float32: there a saturated tanh's 1 - tanh^2 (3e-4) moves by only ~25
#: ulps of 1 over the differences' span, a staircase of a few steps that a probe must cross as they do. A smooth
#: part's third differences read as noise sigma ~ f''' (h/4)^3 / sqrt(20), which widens the tolerance
#: (15 sigma / h) by ~0.05 f''' h^2: less than the truncation allowance |Richardson - central| ~ f''' h^2 / 6 that
#: the tolerance already holds.
PROBE_FRACTION = 4.0
#: The median of a chi-square variable with one degree of freedom: a Gaussian difference's median square over its
#: variance.
CHI2_MEDIAN = 0.454936


def robust_noise_rows(values: Any) -> F64:
    """The rounding noise of each row of ``values`` (rows x equally spaced points, at least 8), from the median
    square of its third and fourth differences (ECnoise's scaling, Moré and Wild 2011): a jump in a row touches at
    most 5 of its 12 or more differences, so it moves the median little where the mean would read it as noise.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> rows = np.linspace(0, 1, 16) + 1e-8 * rng.standard_normal((1, 16))
    >>> jumped = rows + np.where(np.arange(16) >= 8, 1e-3, 0.0)
    >>> bool(0.3e-8 < robust_noise_rows(rows)[0] < 3e-8), bool(robust_noise_rows(jumped)[0] < 1e-6)
    (True, True)
    """
    f = np.asarray(values, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] < 8:
        raise ValueError(f"values: expected rows of at least 8 values, got shape {f.shape}")
    top = np.max(np.abs(f - f[:, :1]), axis=1, keepdims=True)
    scaled = np.divide(f - f[:, :1], top, out=np.zeros_like(f), where=top > 0)
    levels = []
    for k in (3, 4):
        diff = np.diff(scaled, n=k, axis=1)
        gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
        levels.append(gamma * np.median(diff * diff, axis=1) / CHI2_MEDIAN)
    out: F64 = top[:, 0] * np.sqrt(np.mean(levels, axis=0))
    return out


class BackwardCheck(FunctionCheck):
    """``check_function``'s work on a backward: its noise read by both probes (module docstring)."""

    #: A float32 backward's rows round coarser at the scale of the steps than moves of a few ulps show (the wide
    #: probe's reason): against that noise a smooth backward's values look like stairs (tanh(x @ W.T) with its
    #: curvature x 1.1, seed 14: 4 of its 32 elements, the bug's, set aside).
    stairs_behind = False

    def measure_noise(self) -> None:
        super().measure_noise()
        generator = np.random.default_rng(self.seed + 104729)
        base = max(self.input_epsilon, self.output_epsilon) ** (1.0 / 3.0)
        directions = {}
        for i in self.positions:
            x = self.io.inputs[i].detach().double()
            finite = x.isfinite()
            step = numdiff.step_size(torch.where(finite, x, 0.0).numpy(), eps=base)
            sign = torch.from_numpy(generator.choice([-1.0, 1.0], size=tuple(x.shape)))
            directions[i] = torch.where(finite, sign * torch.from_numpy(step) / PROBE_FRACTION, 0.0)
        rows = []
        with torch.no_grad():
            for k in range(16):
                args = [(x.double() + k * directions[j]).to(x.dtype) if j in directions else x
                        for j, x in enumerate(self.io.inputs)]  # fmt: skip
                rows.append((self.project @ self.outputs(args)).numpy())
        values = np.stack(rows, axis=1)
        finite_rows = np.all(np.isfinite(values), axis=1)
        wide = np.zeros(len(values))
        wide[finite_rows] = robust_noise_rows(values[finite_rows])
        self.sigma = np.maximum(self.sigma, wide[:, None])
        self.noise = float(np.max(self.sigma)) if self.sigma.size else 0.0
