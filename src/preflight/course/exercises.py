"""The course's gradient-checking exercises as drop-in functions: its number, its message, then preflight's verdict.

``gradient_check(x, theta, forward, backward)`` (the 1-D exercise) and ``gradient_check_n(parameters, gradients, X,
Y, forward_propagation_n)`` (the N-D exercise) compute the course's relative difference exactly as its notebook does
(same step, same loop, same formula, so the same figures), print the course's message, and then preflight's report
on the same code: which tensor, which element, what kind of bug, judged against the measured rounding noise of the
loss rather than a fixed threshold. Where the course's fixed ``epsilon = 1e-7`` is a poor step for the dtype
(float32), a note says so and what preflight used instead.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from preflight._util.aliases import Params
from preflight._util.validation import check_in_range, describe
from preflight.check.engine import GradcheckReport, gradcheck
from preflight.check.numdiff import machine_epsilon, step_size
from preflight.course.vectors import dictionary_to_vector, gradients_to_vector, vector_to_dictionary

__all__ = [
    "COURSE_THRESHOLD",
    "CourseCheck",
    "course_check",
    "course_check_n",
    "gradient_check",
    "gradient_check_n",
]

#: The course's threshold on the relative difference: above it, "There is a mistake in the backward propagation!".
COURSE_THRESHOLD = 2e-7

Forward1D = Callable[[Any, Any], Any]
ForwardN = Callable[[Any, Any, Params], Any]


@dataclass(frozen=True)
class CourseCheck:
    """The course's relative difference and message, and preflight's report on the same gradient.

    ``str()`` is what :func:`gradient_check_n` prints: the course's line, then the report.

    Examples
    --------
    >>> check = course_check(3, 4, lambda x, theta: theta * x, lambda x, theta: 2 * x)
    >>> repr(check).split(";")[0], check.report.hints
    ('<CourseCheck difference 0.3333333334 (course: a mistake)', ['theta: analytic = 2.00 x numeric'])
    """

    difference: np.float64
    message: str
    report: GradcheckReport

    @property
    def passed(self) -> bool:
        """preflight's verdict (the course's is ``difference <= COURSE_THRESHOLD``)."""
        return self.report.passed

    def __str__(self) -> str:
        return f"{self.message}\n\npreflight on the same gradient:\n{self.report}"

    def __repr__(self) -> str:
        course = "a mistake" if self.difference > COURSE_THRESHOLD else "fine"
        return f"<CourseCheck difference {self.difference:.10g} (course: {course}); preflight: {self.report!r}>"

    def _repr_html_(self) -> str:
        return f"<p><code>{html.escape(self.message)}</code></p>{self.report._repr_html_()}"

    def to_dict(self) -> dict[str, Any]:
        """The course's difference and message, and preflight's report as :meth:`GradcheckReport.to_dict`."""
        return {"difference": float(self.difference), "message": self.message, "report": self.report.to_dict()}


def _message(difference: np.float64) -> str:
    if difference > COURSE_THRESHOLD:
        return f"There is a mistake in the backward propagation! difference = {difference}"
    return f"Your backward propagation works perfectly fine! difference = {difference}"


def _relative_difference(grad: Any, gradapprox: Any) -> np.float64:
    """The course's formula, as it writes it (so its figures come out to the last digit)."""
    numerator = np.linalg.norm(grad - gradapprox)
    denominator = np.linalg.norm(grad) + np.linalg.norm(gradapprox)
    return np.float64(numerator / denominator)


def _epsilon(epsilon: Any) -> float:
    return check_in_range(epsilon, name="epsilon", low=0.0, high=1.0, low_open=True)


def _step_note(epsilon: float, leaves: list[Any]) -> str | None:
    """A note when ``epsilon`` is a poor step for the parameters' dtype, with the steps preflight took instead.

    A central difference at step h errs by about ``eps_f max(1, |theta|) / h`` relative (theta +- h rounded to the
    dtype) plus ``h^2`` (truncation, at unit curvature); once that exceeds the course's own threshold, its verdict
    says more about the step than about the gradient.
    """
    dtype = np.result_type(*leaves)
    scale = max(1.0, max(float(np.max(np.abs(a))) for a in leaves))
    machine = machine_epsilon(dtype)
    error = machine * scale / epsilon + epsilon**2
    if error <= COURSE_THRESHOLD:
        return None
    steps = np.concatenate([step_size(np.asarray(a, dtype=dtype)).astype(np.float64).ravel() for a in leaves])
    cause = (
        f"{dtype}'s machine epsilon is {machine:.1e}, so theta +- epsilon rounds to a neighbour of theta and "
        "(J_plus - J_minus) / (2 epsilon) is mostly rounding"
        if machine * scale / epsilon > epsilon**2
        else "the difference quotient's truncation error (~epsilon^2) is above the course's threshold"
    )
    return (
        f"epsilon = {epsilon:g} is a poor step in {dtype}: {cause} (expected relative error ~{error:.1e}, the course's "
        f"threshold is {COURSE_THRESHOLD:g}); preflight used the step cbrt(eps) max(1, |theta_i|) of the dtype, "
        f"{steps.min():.2g} to {steps.max():.2g} here, and judged every coordinate against the measured rounding "
        "noise of the loss"
    )


def _with_note(report: GradcheckReport, note: str | None) -> GradcheckReport:
    return report if note is None else dataclasses.replace(report, notes=[*report.notes, note])


def course_check(x: Any, theta: Any, forward: Forward1D, backward: Forward1D, epsilon: float = 1e-7) -> CourseCheck:
    """The 1-D exercise: the course's relative difference for ``J = forward(x, theta)``, and preflight's report.

    Parameters
    ----------
    x, theta
        The course's input and parameter (numbers or arrays); ``theta`` is not modified.
    forward : callable
        ``forward(x, theta) -> J``, the course's ``forward_propagation``.
    backward : callable
        ``backward(x, theta) -> dtheta``, the course's ``backward_propagation``: the gradient under test.
    epsilon : float
        The course's step.

    Examples
    --------
    >>> check = course_check(3, 4, lambda x, theta: theta * x, lambda x, theta: x)
    >>> float(check.difference) < 2e-7, check.passed
    (True, True)
    """
    epsilon = _epsilon(epsilon)
    if not callable(forward) or not callable(backward):
        raise ValueError(
            f"forward, backward: expected the functions forward_propagation(x, theta) and backward_propagation(x, "
            f"theta), got {describe(forward)} and {describe(backward)}"
        )
    theta_plus = theta + epsilon
    theta_minus = theta - epsilon
    gradapprox = (forward(x, theta_plus) - forward(x, theta_minus)) / (2 * epsilon)
    grad = backward(x, theta)
    difference = _relative_difference(grad, gradapprox)
    value = np.array(theta, dtype=None if np.issubdtype(np.asarray(theta).dtype, np.floating) else np.float64)
    report = gradcheck(lambda p: forward(x, p["theta"]), {"theta": value}, {"theta": np.asarray(grad)})
    return CourseCheck(difference, _message(difference), _with_note(report, _step_note(epsilon, [value])))


def course_check_n(
    parameters: Params,
    gradients: Any,
    X: Any,
    Y: Any,
    forward_propagation_n: ForwardN,
    epsilon: float = 1e-7,
) -> CourseCheck:
    """The N-D exercise: the course's relative difference over every parameter, and preflight's localized report.

    Parameters
    ----------
    parameters : dict
        ``{"W1": ..., "b1": ..., "WL": ..., "bL": ...}``, the course's column layout (``b`` of shape (n, 1)).
        Perturbed in place by preflight's check and restored bit for bit.
    gradients : dict
        The output of the learner's ``backward_propagation_n``: ``dW1``, ``db1``, ... (``dZ``, ``dA`` and the like
        are ignored and named in the report).
    X, Y : arrays
        The batch: ``X`` of shape (n_x, m), labels ``Y`` of shape (1, m) or (m,).
    forward_propagation_n : callable
        ``forward_propagation_n(X, Y, parameters) -> (cost, cache)``, the course's contract.
    epsilon : float
        The course's step (1e-7).

    Raises
    ------
    ValueError
        ``forward_propagation_n`` is not a function (the course's call ``gradient_check_n(parameters, gradients,
        X, Y, 1e-7, True)`` puts epsilon there), keys that are not the course's, or a cost that is not a number.
    """
    if not callable(forward_propagation_n):
        raise ValueError(
            "forward_propagation_n: expected your function forward_propagation_n(X, Y, parameters) -> (cost, cache) "
            f"as the 5th argument, got {describe(forward_propagation_n)}; the course's gradient_check_n finds it as "
            "a global, this one needs it passed: gradient_check_n(parameters, gradients, X, Y, forward_propagation_n, "
            "1e-7)"
        )
    epsilon = _epsilon(epsilon)
    if not isinstance(parameters, dict):
        raise ValueError(f"parameters: expected the course's dict {{'W1': ..., 'b1': ...}}, got {describe(parameters)}")

    def cost(p: Params) -> Any:
        result = forward_propagation_n(X, Y, p)
        return result[0] if isinstance(result, tuple) else result

    parameters_values, _ = dictionary_to_vector(parameters)
    grad = gradients_to_vector(gradients)
    if grad.shape != parameters_values.shape:
        raise ValueError(
            f"gradients: expected {parameters_values.shape[0]} entries in dW1, db1, ... (as many as the parameters), "
            f"got {grad.shape[0]}"
        )
    num_parameters = parameters_values.shape[0]
    J_plus = np.zeros((num_parameters, 1))
    J_minus = np.zeros((num_parameters, 1))
    gradapprox = np.zeros((num_parameters, 1))
    # The course's loop, step for step: its figures (0.2850931567761623 with its planted bugs) come out exactly.
    for i in range(num_parameters):
        theta_plus = np.copy(parameters_values)
        theta_plus[i] = theta_plus[i] + epsilon
        J_plus[i] = cost(vector_to_dictionary(theta_plus, parameters))
        theta_minus = np.copy(parameters_values)
        theta_minus[i] = theta_minus[i] - epsilon
        J_minus[i] = cost(vector_to_dictionary(theta_minus, parameters))
        gradapprox[i] = (J_plus[i] - J_minus[i]) / (2 * epsilon)
    difference = _relative_difference(grad, gradapprox)
    report = gradcheck(cost, parameters, gradients, batch=(X, Y))
    note = _step_note(epsilon, list(parameters.values()))
    return CourseCheck(difference, _message(difference), _with_note(report, note))


def gradient_check(
    x: Any, theta: Any, forward: Forward1D, backward: Forward1D, epsilon: float = 1e-7, print_msg: bool = True
) -> np.float64:
    """The course's 1-D ``gradient_check``: returns its relative difference, prints its message and preflight's report.

    Examples
    --------
    >>> difference = gradient_check(3, 4, lambda x, theta: theta * x, lambda x, theta: x, print_msg=False)
    >>> print(difference)
    7.814075313343006e-11
    """
    check = course_check(x, theta, forward, backward, epsilon)
    if print_msg:
        print(check)
    return check.difference


def gradient_check_n(
    parameters: Params,
    gradients: Any,
    X: Any,
    Y: Any,
    forward_propagation_n: ForwardN,
    epsilon: float = 1e-7,
    print_msg: bool = True,
) -> np.float64:
    """The course's ``gradient_check_n``: returns its relative difference, prints its message and preflight's report.

    The arguments are the course's, with the learner's ``forward_propagation_n(X, Y, parameters) -> (cost, cache)``
    passed in (the course's version reads it as a global); see :func:`course_check_n`, which returns the report too.

    Examples
    --------
    >>> def forward_propagation_n(X, Y, parameters):
    ...     A = 1 / (1 + np.exp(-(parameters["W1"] @ X + parameters["b1"])))
    ...     return float(np.mean(-Y * np.log(A) - (1 - Y) * np.log(1 - A))), None
    >>> X, Y = np.array([[1.0, -2.0, 0.5]]), np.array([[1, 0, 1]])
    >>> parameters = {"W1": np.array([[0.3]]), "b1": np.array([[0.1]])}
    >>> A = 1 / (1 + np.exp(-(parameters["W1"] @ X + parameters["b1"])))
    >>> gradients = {"dW1": (A - Y) @ X.T / 3, "db1": np.sum(A - Y, axis=1, keepdims=True) / 3}
    >>> bool(gradient_check_n(parameters, gradients, X, Y, forward_propagation_n, print_msg=False) < 2e-7)
    True
    """
    check = course_check_n(parameters, gradients, X, Y, forward_propagation_n, epsilon)
    if print_msg:
        print(check)
    return check.difference
