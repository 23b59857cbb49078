"""The hints of a failing check: they describe the entries that are off, and say nothing of entries that are not."""

from __future__ import annotations

import numpy as np

from preflight.check.diagnosis import TensorEvidence, diagnose


def evidence(analytic: np.ndarray, numeric: np.ndarray, tolerance: float) -> TensorEvidence:
    size = analytic.size
    return TensorEvidence(
        "W", (size,), np.arange(size), analytic, numeric, np.ones(size), np.full(size, tolerance), True
    )


def test_one_entry_off_is_named_as_a_single_wrong_element() -> None:
    numeric = np.linspace(1.0, 2.0, 20)
    analytic = numeric.copy()
    analytic[7] += 0.5
    hints = diagnose([evidence(analytic, numeric, 1e-6)])
    assert any("only 1 of 20 coordinates are off (W[7])" in h for h in hints)


def test_a_failure_with_no_entry_beyond_its_tolerance_gets_no_single_element_hint() -> None:
    # A tensor can fail on evidence the per-entry rule does not see (its judged share, a norm over the tensor):
    # "only 0 of 20 coordinates are off ()" would describe nothing.
    numeric = np.linspace(1.0, 2.0, 20)
    hints = diagnose([evidence(numeric * (1 + 1e-9), numeric, 1e-6)])
    assert not any("only 0 of" in h for h in hints)
