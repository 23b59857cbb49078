"""The gradient-checking engine: steps and noise, evaluators of perturbed losses, the verdict, hints, one report.

Every checker (the NumPy black box, the reference network's structure-aware check, the PyTorch adapter) runs on this
engine and returns its :class:`GradcheckReport`.
"""

from __future__ import annotations

from preflight.check.engine import NondeterministicLossError, gradcheck
from preflight.check.perturb import BlackBoxLoss, PerturbedLoss
from preflight.check.report import COURSE_THRESHOLDS, Coordinate, GradcheckReport, TensorResult
from preflight.check.tree import flatten, ravel, unravel

__all__ = [
    "COURSE_THRESHOLDS",
    "BlackBoxLoss",
    "Coordinate",
    "GradcheckReport",
    "NondeterministicLossError",
    "PerturbedLoss",
    "TensorResult",
    "flatten",
    "gradcheck",
    "ravel",
    "unravel",
]
