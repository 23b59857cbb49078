"""The float64 copy of a float32 NumPy check whose gradient is a function: ``grads(params64)`` against float64
differences of ``loss(params64)`` (:mod:`preflight.check.reference` merges the reports).

A learner's loss and backward of float64 parameters compute in float64 (float32 data are promoted), so where
``grads`` is callable the same code can be checked at float64 copies of the same values, as the torch and JAX
adapters check a float64 copy of a float32 model: float64 differences resolve an error a million times finer than
float32's, which in a ReLU network at batch 256 resolve about 1e-3 of the gradient at best. A copy is refused, with
the reason, where ``grads`` returns float32 arrays at float64 parameters (it casts inside, or returns cached values:
the copy would prove nothing), or the loss or ``grads`` raises there. A gradient given as arrays gets no copy: it
exists in float32 only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from preflight.check.numdiff import COARSE_EPSILON
from preflight.check.reference import FLOAT32_RESOLUTION, analytic_resolution, with_reference
from preflight.check.report import GradcheckReport
from preflight.check.tree import flatten, widened

__all__ = ["ARRAYS_NOTE", "numpy_reference"]

#: Said by a float32 check that passed a gradient given as arrays: what it cannot see, and how to have it seen. After
#: 1000 steps of training, learners' networks given as arrays pass 12 of 161 errors >= 1e-3 (a single entry off by
#: 5 %, a bias gradient scaled by 0.99) which the same gradient given as a function fails at the float64 copies
#: (benchmarks/numpy_float32_bugs.py --train 1000).
ARRAYS_NOTE = (
    "float32 gradient given as arrays: an error below what float32 differences resolve (one entry off by a few %, "
    "or a scale of 1e-3 after training) can pass; give grads as a function of the parameters "
    "(grads=lambda p: backward(p, ...)) to check it at float64 copies of the parameters too"
)


def numpy_reference(
    own: GradcheckReport, params: Any, grads: Callable[[Any], Any], check: Callable[[Any, Any], GradcheckReport]
) -> GradcheckReport:
    """``own`` (a float32 check) merged with ``check(params64, grads(params64))``, the same check at float64 copies of
    ``params`` (float32 resolution added to its tolerances), or with a note saying why no copy could be checked.

    Examples
    --------
    >>> import numpy as np
    >>> from preflight import gradcheck
    >>> w = np.linspace(0.5, 1.5, 8).astype(np.float32)
    >>> loss = lambda p: float(np.sum(p["w"] ** 3))
    >>> grads = lambda p: {"w": 3 * p["w"] ** 2 * (1 + 3e-6)}        # below what float32 differences resolve
    >>> gradcheck(loss, {"w": w}, grads, reference=False).passed, gradcheck(loss, {"w": w}, grads).passed
    (True, False)
    """
    wide = widened(params)
    try:
        gradient = grads(wide)
        narrow = sorted({str(np.asarray(v).dtype) for _, v in flatten(gradient) if _single(v)})
    except Exception as error:  # grads that do not run at float64 parameters say nothing about float32's
        return with_reference(own, None, f"grads does not run at float64 parameters: {type(error).__name__}")
    if narrow:
        return with_reference(own, None, f"grads returns {narrow[0]} at float64 parameters: it casts inside")
    try:
        with analytic_resolution(FLOAT32_RESOLUTION):
            again = check(wide, gradient)
    except Exception as error:  # a loss that does not run at float64 parameters: the float32 verdict stands
        return with_reference(own, None, f"the loss does not run at float64 parameters: {type(error).__name__}")
    return with_reference(own, again)


def _single(value: Any) -> bool:
    """A float32 (or narrower) floating array or scalar."""
    dtype = np.asarray(value).dtype
    return bool(np.issubdtype(dtype, np.floating) and np.finfo(dtype).eps > COARSE_EPSILON)
