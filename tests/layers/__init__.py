"""A registry of realistic hand-written layers, correct and buggy, for judging a gradient checker (issue #12)."""

from __future__ import annotations

from . import attention, conv, models, norms, numpy_cases, parked, pointwise, swish  # noqa: F401  (each registers)
from .registry import CASES, Case

__all__ = ["CASES", "Case"]
