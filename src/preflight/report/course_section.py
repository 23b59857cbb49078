"""The tour's course section: the course's N-D gradient-checking exercise, in its own layout."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from preflight.report.html import Finding, TourSection

__all__ = ["course_section"]


def _forward_propagation_n(net: Any, X: Any, Y: Any, parameters: Any) -> tuple[float, None]:
    """The course's contract, ``forward_propagation_n(X, Y, parameters) -> (cost, cache)``, on the reference network."""
    return net.cost(parameters, X, Y), None


def course_section(quick: bool, figures: Path) -> TourSection:
    import numpy as np

    from preflight.course import course_check_n
    from preflight.nn import BuggyNetwork, Network

    # The course's N-D case (its gradient_check_n_test_case): np.random.seed(1), X = randn(4, 3), then the weights
    # and biases drawn with randn in the order W1, b1, W2, b2, W3, b3; samples as columns, b of shape (n, 1).
    draw = np.random.RandomState(1)
    X, Y = draw.randn(4, 3), np.array([1, 1, 0])
    sizes = [4, 5, 3, 1]
    shapes = Network(sizes, layout="columns").shapes()
    parameters = {name: draw.randn(*shape) for name, shape in shapes.items()}
    checks = {}
    for title, net in (
        (
            "with the course's planted bugs (dW2 doubled, db1 times 4)",
            BuggyNetwork(sizes, bug="course", layout="columns"),
        ),
        ("fixed", Network(sizes, hidden="relu", output="sigmoid", layout="columns")),
    ):
        gradients = {f"d{name}": g for name, g in net.gradients(parameters, X, Y).items()}
        checks[title] = course_check_n(parameters, gradients, X, Y, partial(_forward_propagation_n, net))
    buggy, fixed = checks.values()
    failing = sorted(name for name, r in buggy.report.parameters.items() if not r.passed)
    return TourSection(
        key="course",
        title="Coming from the course: its gradient-checking exercise, in its own layout",
        intro="The course's N-D exercise as the course lays it out: samples as columns, b of shape (n, 1), gradients "
        "named dW1, db1. preflight.course.gradient_check_n prints the course's relative difference (computed as the "
        "course does), then preflight's report: which tensor, which element, what kind of bug. The reference network "
        "computes the cross-entropy from the logits: the course's own cost, log(sigmoid(z)), gives 0.2850931567761623 "
        "and, fixed, 1.1890913024229996e-07; with the same gradients the fixed figure here is ~1e-9, so the course's "
        "1.2e-7 is the rounding of its cost formula at epsilon = 1e-7, not an error in the gradient.",
        text="\n\n".join(f"{title}:\n{check}" for title, check in checks.items()),
        figures=[],
        summary={
            "difference_buggy": float(buggy.difference),
            "difference_fixed": float(fixed.difference),
            "buggy_failing": failing,
            "buggy_hints": list(buggy.report.hints),
            "fixed_passed": fixed.passed,
        },
        findings=[
            Finding(
                "the course's planted bugs",
                f"course difference {buggy.difference:.10f}; preflight names {', '.join(failing)}",
                failing == ["W2", "b1"],
                "W2 and b1 named",
                "bad",
            ),
            Finding(
                "fixed",
                f"course difference {fixed.difference:.3g}; preflight {'passed' if fixed.passed else 'FAILED'}",
                fixed.passed,
                "passes",
                "good" if fixed.passed else "bad",
            ),
        ],
        lessons={
            "the course's planted bugs are named (W2, b1)": failing == ["W2", "b1"],
            "fixed, it passes": fixed.passed,
        },
    )
