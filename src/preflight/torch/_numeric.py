"""Finite differences for the PyTorch adapter: the step, the noise a difference can explain, the element verdict.

A minimal path of its own, in NumPy float64 on values the torch evaluations produced, so that the adapter does not
depend on how the perturbed losses are computed (one at a time, vmapped, or through a cached prefix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = ["Differences", "machine_epsilon", "steps"]

A = NDArray[Any]
#: Rounding noise of one loss evaluation, in units of machine epsilon times the loss scale. A loss summed over a
#: batch of O(100) terms through a few layers accumulates ~sqrt(terms) ulps; 32 leaves a margin of several over what
#: correct float32 and float64 networks showed here.
NOISE_ULPS = 32.0
#: Relative slack on top of the noise, in units of eps^(2/3) (the relative truncation error of a central difference
#: at the optimal step, for a function whose length scale is 1): 100 x that is 3.7e-9 in float64, 2.4e-3 in float32.
TRUNCATION_SLACK = 100.0


def machine_epsilon(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


def steps(theta: torch.Tensor, eps: float | None, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Exactly representable steps ``(h_plus, h_minus)`` per element: ``theta + h_plus`` and ``theta - h_minus`` are
    the values actually evaluated. Default ``cbrt(machine eps) * max(1, |theta|)``, the optimum of a central difference.
    """
    if eps is None:
        h = machine_epsilon(theta.dtype) ** (1.0 / 3.0) * torch.clamp(theta.abs(), min=1.0) * scale
    else:
        h = torch.full_like(theta, eps * scale)
    return (theta + h) - theta, theta - (theta - h)


@dataclass(frozen=True)
class Differences:
    """Loss values around theta for a set of coordinates, and what they say about the derivative."""

    f0: float | A
    f_plus: A
    f_minus: A
    h_plus: A
    h_minus: A
    scale: A
    epsilon: float
    f_plus2: A | None = None
    f_minus2: A | None = None

    def verdict(self, analytic: A) -> tuple[A, A, A, A]:
        """``(numeric, tolerance, bad, kink)`` per element, analytic values given.

        ``scale`` is the magnitude the rounding of one evaluation is relative to (the loss, or an output element).
        With the +-2h values the numeric derivative is Richardson-extrapolated and its truncation error estimated
        from the two central differences; without them a relative slack covers it. A kink is an element whose
        one-sided differences disagree beyond the noise with the analytic value between them.
        """
        h = (self.h_plus + self.h_minus) / 2.0
        central = (self.f_plus - self.f_minus) / (self.h_plus + self.h_minus)
        noise = NOISE_ULPS * self.epsilon * self.scale / h
        slack = TRUNCATION_SLACK * self.epsilon ** (2.0 / 3.0)
        if self.f_plus2 is not None and self.f_minus2 is not None:
            wide = (self.f_plus2 - self.f_minus2) / (2.0 * (self.h_plus + self.h_minus))
            numeric = central + (central - wide) / 3.0
            truncation = np.abs(central - wide) / 3.0
            tolerance = 1.5 * noise + 2.0 * truncation + 1e-3 * slack * np.abs(numeric)
        else:
            numeric = central
            tolerance = noise + slack * np.abs(numeric)
        bad = np.abs(analytic - numeric) > tolerance
        floor = 1.5 * noise + slack * np.abs(numeric)
        right = (self.f_plus - self.f0) / self.h_plus
        left = (self.f0 - self.f_minus) / self.h_minus
        low, high = np.minimum(left, right) - tolerance, np.maximum(left, right) + tolerance
        # The one-sided spread is compared with the rounding noise only: a jump inflates the truncation estimate.
        kink = bad & (np.abs(right - left) > 10.0 * floor) & (analytic >= low) & (analytic <= high)
        return numeric, tolerance, bad & ~kink, kink
