"""A float32 check completed by the same check on a float64 copy: one report, both verdicts.

Finite differences of a float32 loss resolve a gradient element only to a few sigma / h of its rounding noise
(about 1e-3 of a typical element at batch 256, less beside dense ReLU kinks). Where the layer's code runs in
float64 as well (a module cast with ``.double()``, a function of float64 inputs), the same code checked on float64
copies of the same values resolves errors a million times smaller, at the same point. The adapters run both; this
module merges the two reports: a tensor fails when either check fails it, and the float32 check keeps what only
float32 can show (a backward that loses precision in float32 only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.check.report import GradcheckReport, TensorResult

__all__ = [
    "FLOAT32_RESOLUTION", "REFERENCE_NOTE", "analytic_resolution", "check_reference", "resolution_floor",
    "with_reference",
]  # fmt: skip

#: How every merged report names the float64 check (tests and the text report look for it).
REFERENCE_NOTE = "float64 copy"
#: What float32 arithmetic itself cannot promise of a derivative: 8 ulps of the largest entry of its tensor. The
#: float64 copy runs the caller's float64 code, which may hold float32 on purpose or by necessity (torch's float64
#: hardsigmoid backward multiplies by 1/6 rounded to float32, 3e-8 off) or a forward less accurate than float64
#: (trigamma: 4e-10; ndtr's tail: 1e-16 absolute); a float32 layer is none the worse for those. Discrepancies below
#: this are not failures of the copy, which still resolves far finer than float32 differences: their tolerance is
#: several noise units of the loss (a few eps |loss|) over a step of 4.9e-3, hundreds of eps |loss| per unit.
FLOAT32_RESOLUTION = 8 * float(np.finfo(np.float32).eps)

_RESOLUTION: ContextVar[float] = ContextVar("analytic_resolution", default=0.0)


def check_reference(reference: object, *, optional: bool = False) -> None:
    """ValueError naming ``reference`` unless it is True or False (or None where ``optional``: "unless sampled").

    Examples
    --------
    >>> check_reference("yes")
    Traceback (most recent call last):
    ...
    ValueError: reference: expected True or False, got 'yes'
    """
    if not (isinstance(reference, bool) or (optional and reference is None)):
        allowed = "True, False or None" if optional else "True or False"
        raise ValueError(f"reference: expected {allowed}, got {reference!r}")


@contextmanager
def analytic_resolution(resolution: float) -> Iterator[None]:
    """Within the block, every verdict (``gradcheck``'s, ``check_function``'s) adds ``resolution`` times its tensor's
    largest |analytic| to each coordinate's tolerance (:func:`resolution_floor`): how a float64 copy of a float32
    check is judged."""
    token = _RESOLUTION.set(resolution)
    try:
        yield
    finally:
        _RESOLUTION.reset(token)


def resolution_floor(analytic: NDArray[Any]) -> float:
    """The tolerance added to every coordinate of a tensor whose judged analytic values are ``analytic``: 0 outside
    :func:`analytic_resolution`.

    Examples
    --------
    >>> with analytic_resolution(1e-3):
    ...     resolution_floor(np.array([0.5, -2.0, np.nan]))
    0.002
    >>> resolution_floor(np.array([0.5, -2.0]))
    0.0
    """
    resolution = _RESOLUTION.get()
    finite = np.abs(analytic[np.isfinite(analytic)])
    return resolution * float(finite.max()) if resolution > 0 and finite.size else 0.0


def _merge(
    own: dict[str, TensorResult] | None, other: dict[str, TensorResult] | None, found: list[str], section: str
) -> dict[str, TensorResult] | None:
    """``own``'s results, each replaced by ``other``'s where only the float64 copy fails it (named in ``found``), or
    where float32 judged none of its coordinates and the copy judged some."""
    if own is None:
        return None
    merged = dict(own)
    for name, result in own.items():
        theirs = (other or {}).get(name)
        if theirs is None or not result.passed:
            continue
        if not theirs.passed:
            merged[name] = theirs
            found.append(f"{section}{name}")
        elif result.checked == 0 and theirs.checked > 0:
            merged[name] = theirs
    return merged


def with_reference(
    own: GradcheckReport, reference: GradcheckReport | None, why_not: str | None = None
) -> GradcheckReport:
    """``own`` (a float32 check) completed by ``reference`` (the same check of a float64 copy).

    A tensor fails when either check fails it; where only the float64 copy does, its result (worst coordinates,
    float64 values) stands in the report, and a note and the hints say so. A float32 check that could judge too
    few coordinates (INCONCLUSIVE) passes when the float64 copy passes. A float32 check that stopped stays stopped.

    Parameters
    ----------
    own : GradcheckReport
        The check at the caller's precision.
    reference : GradcheckReport or None
        The check of the float64 copy; None when none could be made (``why_not`` says why, in a note).
    why_not : str, optional

    Returns
    -------
    GradcheckReport

    Examples
    --------
    >>> import numpy as np
    >>> from preflight import gradcheck
    >>> w32, w64 = np.ones(3, np.float32), np.ones(3)
    >>> loss = lambda p: float(np.sum(p["w"] ** 3))
    >>> own = gradcheck(loss, {"w": w32}, {"w": 3 * w32 * np.float32(1 + 2e-6)})  # below what float32 resolves
    >>> ref = gradcheck(loss, {"w": w64}, {"w": 3 * w64 * (1 + 2e-6)})
    >>> own.passed, with_reference(own, ref).passed
    (True, False)
    """
    if reference is None or own.stopped or reference.stopped:
        # A copy that cannot be checked says nothing about the caller's layer: the float32 verdict stands alone.
        why = why_not if reference is None else "the float32 check stopped" if own.stopped else reference.stopped
        if why is None:
            return own
        return dataclasses.replace(own, notes=[*own.notes, f"{REFERENCE_NOTE}: not checked ({why})"])
    found: list[str] = []
    parameters = _merge(own.parameters, reference.parameters, found, "") or {}
    forward = _merge(own.forward_ad, reference.forward_ad, found, "forward-mode AD: ")
    second = _merge(own.second_order, reference.second_order, found, "second order: ")
    sections = [*parameters.values(), *(forward or {}).values(), *(second or {}).values()]
    own_inconclusive = own.verdict == "INCONCLUSIVE"
    passed = all(r.passed for r in sections) and (not own_inconclusive or reference.passed)
    if found:
        note = (f"{REFERENCE_NOTE}: the same check on float64 copies of the values fails {', '.join(found)}, which "
                "float32 differences do not resolve; those rows show the float64 values")  # fmt: skip
    else:
        note = (f"{REFERENCE_NOTE}: the same check on float64 copies of the values {reference.verdict.lower()} "
                f"({reference.checked:,} {reference.unit} judged, {reference.evaluations:,} evaluations)")  # fmt: skip
    hints = own.hints + [f"{REFERENCE_NOTE}: {h}" for h in reference.hints if found]
    return dataclasses.replace(
        own, passed=passed, parameters=parameters, forward_ad=forward, second_order=second, hints=hints,
        notes=[*own.notes, note], evaluations=own.evaluations + reference.evaluations,
        seconds=own.seconds + reference.seconds, reference=reference,
    )  # fmt: skip
