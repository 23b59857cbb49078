"""The tour's JAX section (where jax is installed): a hand-written custom_vjp rule checked in float32."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from preflight.report.html import Finding, TourSection

__all__ = ["jax_installed", "jax_section"]


def jax_installed() -> bool:
    """Whether jax can be imported (False for a broken install, or an import hook that refuses it)."""
    try:
        return importlib.util.find_spec("jax") is not None
    except (ImportError, ValueError):
        return False


def jax_section(quick: bool, figures: Path) -> TourSection:
    from preflight.jax.demo import planted_bug

    correct, buggy = planted_bug()
    caught = not buggy.passed and buggy.worst == "w"
    return TourSection(
        key="jax",
        title="JAX: a hand-written custom_vjp rule, checked in float32",
        intro="JAX computes in float32 unless x64 is enabled, and its check_grads tests one random direction with "
        "fixed tolerances. preflight.jax.check_function checks every entry of the Jacobian, calibrated to float32, "
        "and names the input, the element and the kind of bug.",
        text=f"The correct rule:\n{correct}\n\nThe rule with dW doubled:\n{buggy}",
        figures=[],
        summary={"correct_passed": correct.passed, "buggy_passed": buggy.passed, "buggy_hints": list(buggy.hints)},
        findings=[
            Finding("correct rule, float32", "passed" if correct.passed else "failed", correct.passed, "passes"),
            Finding(
                "planted bug (dW doubled)",
                f"bug caught in w: {buggy.hints[0].removeprefix('w: ')}" if caught and buggy.hints else "passed",
                caught,
                "caught in w",
                "bad",
            ),
        ],
        lessons={"check_function passes a correct custom_vjp rule and names its bug": correct.passed and caught},
    )
