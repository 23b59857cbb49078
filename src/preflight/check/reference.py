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
    "FLOAT32_RESOLUTION", "REFERENCE_NOTE", "analytic_resolution", "before_reference", "check_reference",
    "keep_entries", "resolution_floor", "suspects", "with_reference",
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
_SUSPECTS: ContextVar[dict[str, NDArray[np.bool_]]] = ContextVar("suspects")
_BEFORE: ContextVar[bool] = ContextVar("before_reference", default=False)


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
def analytic_resolution(resolution: float, own: GradcheckReport | None = None) -> Iterator[None]:
    """Within the block, every verdict (``gradcheck``'s, ``check_function``'s) adds ``resolution`` times its tensor's
    largest |analytic| to each coordinate's tolerance (:func:`resolution_floor`): how a float64 copy of a float32
    check is judged. ``own``: the float32 check's report, whose failing and unjudged entries the copy's
    ``check_function`` looks at again where it would set them aside as kinks (:func:`suspects`)."""
    wanted: dict[str, NDArray[np.bool_]] = {}
    for section in (own.parameters, own.forward_ad or {}) if own is not None else ():
        for name, result in section.items():
            if result.entries is not None:
                seen, mask = wanted.get(name), result.entries.bad | ~result.entries.judged
                wanted[name] = mask if seen is None or seen.shape != mask.shape else seen | mask
    token, named = _RESOLUTION.set(resolution), _SUSPECTS.set(wanted)
    try:
        yield
    finally:
        _SUSPECTS.reset(named)
        _RESOLUTION.reset(token)


def suspects(name: str, shape: tuple[int, ...]) -> NDArray[np.bool_] | None:
    """The entries ``shape`` (row-major, as the report's) of tensor ``name`` that the float32 check failed or did not
    judge, while the float64 copy is checked (:func:`analytic_resolution`); None elsewhere. The copy's
    ``check_function`` looks at those it would set aside as kinks again with smaller steps: a stair of
    ``round(x, 3)`` 2.5e-6 from the point, within float64's step, which float32's step spans too, would leave a
    float32 failure there neither confirmed nor excused, and a bug there unseen by both checks.

    Examples
    --------
    >>> suspects("x", (2, 3)) is None
    True
    """
    mask = _SUSPECTS.get({}).get(name)
    if mask is None or mask.size != int(np.prod(shape)):
        return None
    return mask.reshape(shape)


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


@contextmanager
def before_reference() -> Iterator[None]:
    """Within the block, a float32 check whose float64 copy follows: its results keep their entries
    (:func:`keep_entries`)."""
    token = _BEFORE.set(True)
    try:
        yield
    finally:
        _BEFORE.reset(token)


def keep_entries() -> bool:
    """Whether a tensor's result keeps its :class:`~preflight.check.report.Entries`: in a float32 check whose float64
    copy follows (:func:`before_reference`: the copy looks again at what it failed or did not judge, the merge reads
    its failures against the copy), and in the copy's check; :func:`with_reference` drops them."""
    return _BEFORE.get() or _RESOLUTION.get() > 0


def differences_artifact(own: TensorResult, copy: TensorResult) -> int:
    """How many entries float32 differences fail where the float32 backward gives the float64 copy's derivative,
    which float64 differences pass; 0 unless that holds of every entry float32 fails (the copy may fail others).

    Such a failure is the float32 forward's, not the backward's: its values round (a staircase of rounding times a
    smooth factor: each stair a jump of a few noise units, which no reading of the values tells from noise, and the
    differences settle on the stairs' mean slope), while the backward's values match the copy's, which float64
    differences, a million times finer, pass. The match is held to :data:`FLOAT32_RESOLUTION` of the tensor's
    largest derivative, what float32 itself promises; a bug in float32 code only (a cast, a float32 branch,
    precision lost in the backward) differs by far more, and the failure stands. Every failing entry must have been
    judged by the copy: an entry the copy would set aside as a kink (a stair within float64's step, 1/800 of
    float32's) is looked at again there with smaller steps (:func:`suspects`), and judged once its estimates
    settle away from the stair.

    Examples
    --------
    >>> import numpy as np
    >>> from preflight.check.report import Entries
    >>> def result(analytic, bad):
    ...     e = Entries(np.array(analytic), np.ones(2, bool), np.array(bad))
    ...     return TensorResult("x", (2,), 2, 2, 0.0, not any(bad), sum(bad), 0.0, entries=e)
    >>> copy = result([1.0, 0.5], [False, False])
    >>> differences_artifact(result([1.0, 0.5], [False, True]), copy)
    1
    >>> differences_artifact(result([1.0, 0.51], [False, True]), copy)  # the backward differs
    0
    """
    mine, theirs = own.entries, copy.entries
    if mine is None or theirs is None or mine.analytic.shape != theirs.analytic.shape:
        return 0
    failing = mine.bad
    if not failing.any() or not (theirs.judged & ~theirs.bad)[failing].all():
        return 0
    reference = np.abs(theirs.analytic[theirs.judged])
    scale = float(reference[np.isfinite(reference)].max(initial=0.0))
    with np.errstate(invalid="ignore"):
        close = np.abs(mine.analytic[failing] - theirs.analytic[failing]) <= FLOAT32_RESOLUTION * scale
    return int(failing.sum()) if bool(close.all()) else 0


def _merge(
    own: dict[str, TensorResult] | None, other: dict[str, TensorResult] | None, found: list[str], section: str,
    artifacts: list[str],
) -> dict[str, TensorResult] | None:  # fmt: skip
    """``own``'s results, each replaced by ``other``'s where only the float64 copy fails it (named in ``found``),
    where float32 judged none of its coordinates and the copy judged some, or where every float32 failure is the
    differences' own (:func:`differences_artifact`, named in ``artifacts``)."""
    if own is None:
        return None
    merged = dict(own)
    for name, result in own.items():
        theirs = (other or {}).get(name)
        if theirs is None:
            continue
        if not result.passed:
            count = differences_artifact(result, theirs)
            if count:
                merged[name] = theirs
                artifacts.append(f"{section}{name} ({count:,} of {result.checked:,} entries)")
                if not theirs.passed:
                    found.append(f"{section}{name}")
        elif not theirs.passed:
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
    artifacts: list[str] = []
    parameters = _merge(own.parameters, reference.parameters, found, "", artifacts) or {}
    forward = _merge(own.forward_ad, reference.forward_ad, found, "forward-mode AD: ", artifacts)
    second = _merge(own.second_order, reference.second_order, found, "second order: ", artifacts)
    sections = [*parameters.values(), *(forward or {}).values(), *(second or {}).values()]
    own_inconclusive = own.verdict == "INCONCLUSIVE"
    passed = all(r.passed for r in sections) and (not own_inconclusive or reference.passed)
    if found:
        note = (f"{REFERENCE_NOTE}: the same check on float64 copies of the values fails {', '.join(found)}, which "
                "float32 differences do not resolve; those rows show the float64 values")  # fmt: skip
    else:
        note = (f"{REFERENCE_NOTE}: the same check on float64 copies of the values {reference.verdict.lower()} "
                f"({reference.checked:,} {reference.unit} judged, {reference.evaluations:,} evaluations)")  # fmt: skip
    if artifacts:
        note += (f"; float32 differences fail {', '.join(artifacts)} where the float32 backward gives the copy's "
                 "derivatives (to float32's resolution), which float64 differences pass: the float32 forward's "
                 "rounding, not a backward error; those rows show the float64 values")  # fmt: skip
    # Where every float32 failure was the differences' own, what the float32 hints diagnosed is not there.
    hints = [] if artifacts and passed and not own.stopped else own.hints
    hints = hints + [f"{REFERENCE_NOTE}: {h}" for h in reference.hints if found]
    return _without_entries(dataclasses.replace(
        own, passed=passed, parameters=parameters, forward_ad=forward, second_order=second, hints=hints,
        notes=[*own.notes, note], evaluations=own.evaluations + reference.evaluations,
        seconds=own.seconds + reference.seconds, reference=_without_entries(reference),
    ))  # fmt: skip


def _without_entries(report: GradcheckReport) -> GradcheckReport:
    """``report`` with no result keeping its :class:`~preflight.check.report.Entries` (they served the merge; a
    large Jacobian's would outlive it in the caller's report)."""

    def strip(results: dict[str, TensorResult] | None) -> dict[str, TensorResult] | None:
        if results is None:
            return None
        return {name: r if r.entries is None else dataclasses.replace(r, entries=None) for name, r in results.items()}

    sections = [report.parameters, report.forward_ad or {}, report.second_order or {}]
    if all(r.entries is None for section in sections for r in section.values()):
        return report
    return dataclasses.replace(
        report, parameters=strip(report.parameters) or {}, forward_ad=strip(report.forward_ad),
        second_order=strip(report.second_order),
    )  # fmt: skip
