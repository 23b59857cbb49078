"""From the verdicts on a function's Jacobian blocks to the one report: each input's result, the hints' evidence,
whether the check proved anything.

Shared by every adapter's ``check_function`` (``preflight.torch``, ``preflight.jax``): each judges its inputs' blocks
with :func:`preflight.check.function_judge.judge_block`, then builds its report from these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.check.diagnosis import TensorEvidence
from preflight.check.function_steps import Verdict
from preflight.check.jacobian import Locator
from preflight.check.reference import keep_entries, resolution_floor
from preflight.check.report import Coordinate, Entries, TensorResult
from preflight.check.verdict import JUDGED_SHARE, relative_difference

__all__ = ["NOTHING_TO_CHECK", "block_evidence", "conclusive", "nothing_to_check", "verdict_result"]

A = NDArray[Any]
#: The note of a check whose Jacobian has no entry at all (an empty input or output), which passes as torch's
#: gradcheck does: nothing was set aside, there was nothing to judge.
NOTHING_TO_CHECK = "0 elements, nothing to check (an empty input or output)"


def verdict_result(
    name: str, shape: tuple[int, ...], analytic: A, v: Verdict, worst: int, outputs: Locator
) -> TensorResult:
    """One input's result from the verdict on its Jacobian block (entries flattened row-major, ``(R, n)``): kinks
    and skipped entries count in no figure; ``worst`` entries ranked by their excess over the tolerance.

    Examples
    --------
    >>> v = Verdict(np.array([[1.0, 2.0]]), np.full((1, 2), 1e-6), np.array([[False, True]]),
    ...             np.zeros((1, 2), bool), np.zeros((1, 2), bool), np.ones((1, 2), bool))
    >>> r = verdict_result("x", (2,), np.array([[1.0, 3.0]]), v, 1, lambda flat: ((flat,), None))
    >>> r.passed, r.failed, r.worst[0].index
    (False, 1, (1,))
    """
    a, numeric, tolerance = analytic.ravel(), v.numeric.ravel(), v.tolerance.ravel()
    bad, kink, skip = v.bad.ravel(), v.kink.ravel(), v.skip.ravel()
    keep = ~kink & ~skip
    floor = resolution_floor(a[keep])  # 0 but for the float64 copy of a float32 check (preflight.check.reference)
    if floor > 0:
        tolerance = tolerance + floor
        with np.errstate(invalid="ignore"):
            bad = bad & ~(np.abs(a - numeric) <= tolerance)  # a NaN stays bad
    with np.errstate(invalid="ignore"):
        excess = np.where(keep, np.abs(a - numeric) / np.maximum(tolerance, 1e-300), 0.0)
    excess = np.where(bad & np.isnan(excess), np.inf, excess)  # a NaN from the backward ranks first

    def coordinates(flats: list[int]) -> list[Coordinate]:
        out = []
        for flat in flats:
            index, output = outputs(flat)
            out.append(Coordinate(index, float(a[flat]), float(numeric[flat]), float(tolerance[flat]), output))
        return out

    judged = v.judged.ravel()
    entries = Entries(a.astype(np.float64), judged, bad) if keep_entries() else None
    return TensorResult(
        name=name, shape=shape, size=int(a.size), checked=int(keep.sum()),
        difference=relative_difference(a[keep], numeric[keep]), passed=not bool(bad.any()),
        failed=int(bad.sum()), significance=float(excess.max()) if excess.size else 0.0,
        worst=coordinates(np.flatnonzero(keep)[np.argsort(-excess[keep], kind="stable")][:worst].tolist()),
        kinks=coordinates(np.flatnonzero(kink).tolist()), inconclusive=bool(v.tried.any() and not v.judged.any()),
        entries=entries,
    )  # fmt: skip


def block_evidence(label: str, shape: tuple[int, ...], theta: A, weights: A, a: A, v: Verdict) -> TensorEvidence:
    """What the hints read: the gradient of ``<weights, outputs>`` (one random draw) in the input's shape (a
    transposed gradient shows there), with the tolerance ``|weights| @ tolerance`` the entries' own tolerances give
    it (infinite where an entry is a kink or skipped). ``theta``: the input's values, flat.

    Examples
    --------
    >>> v = Verdict(np.array([[2.0]]), np.array([[1e-6]]), np.array([[True]]), np.zeros((1, 1), bool),
    ...             np.zeros((1, 1), bool), np.ones((1, 1), bool))
    >>> block_evidence("x", (1,), np.array([0.5]), np.array([1.0]), np.array([[3.0]]), v).failed
    True
    """
    theta = np.where(np.isfinite(theta), theta, 0.0).astype(np.float64)
    tolerance = np.abs(weights) @ np.where(v.kink | v.skip, np.inf, v.tolerance)
    return TensorEvidence(label, shape, np.arange(theta.size), weights @ a, weights @ v.numeric, theta, tolerance,
                          bool(v.bad.any()))  # fmt: skip


def conclusive(verdicts: Sequence[Verdict], notes: list[str], *, any_finite: bool = True) -> bool:
    """Whether the verdicts prove anything: some entry judged, and entries not resolved at the step no more than the
    engine allows kinks (:data:`preflight.check.verdict.JUDGED_SHARE`); a note says why not. ``any_finite``: some
    element of the checked inputs is finite (else a note says nothing was checked).

    Examples
    --------
    >>> kink = Verdict(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1), bool), np.ones((1, 1), bool),
    ...                np.zeros((1, 1), bool), np.ones((1, 1), bool))
    >>> notes: list[str] = []
    >>> conclusive([kink], notes), notes[0].split(":")[0]
    (False, 'inconclusive')
    """
    tried, judged = sum(int(v.tried.sum()) for v in verdicts), sum(int(v.judged.sum()) for v in verdicts)
    unresolved = sum(int(v.not_resolved.sum()) for v in verdicts)
    # Entries not resolved at the step count against the judged share as the engine's kinks do (JUDGED_SHARE): a
    # check that could resolve almost none of its entries proves nothing.
    out = tried == 0 or (judged > 0 and judged >= JUDGED_SHARE * (judged + unresolved))
    if not any_finite:
        notes.append("nothing to check: every element of the checked inputs is not finite")
    if not out and judged > 0:
        notes.append(
            f"inconclusive: {unresolved:,} Jacobian entries not resolved at the step against {judged:,} judged: "
            "nothing proven"
        )
    elif not out:
        notes.append(
            f"inconclusive: none of the {tried:,} Jacobian entries could be judged (all set aside as kinks or steps "
            "of the function, or not checkable): nothing proven"
        )
    return out


def nothing_to_check(
    inputs: Sequence[tuple[str, tuple[int, ...], Locator]], worst: int, notes: list[str]
) -> dict[str, TensorResult]:
    """Each input's result ``(name, shape, locator)`` when the Jacobian has no entry at all (an empty input or
    output), with the note :data:`NOTHING_TO_CHECK`: the check passes. (A check whose entries exist but were all set
    aside does not: :func:`conclusive`.)

    Examples
    --------
    >>> notes: list[str] = []
    >>> results = nothing_to_check([("x", (0, 3), lambda flat: ((flat,), None))], 5, notes)
    >>> results["x"].passed, results["x"].checked, notes
    (True, 0, ['0 elements, nothing to check (an empty input or output)'])
    """
    notes.append(NOTHING_TO_CHECK)
    return {name: verdict_result(name, shape, np.zeros((0, 0)), Verdict.empty(), worst, where)
            for name, shape, where in inputs}  # fmt: skip
