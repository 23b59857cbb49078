"""A learner's gradient-checking notebook, pasted unchanged into preflight.

tests/course_exercise.py is the course's exercise as a learner has it (column layout, "dW1" keys beside "dZ1",
"dA1"; the N-D backward pass with the course's two planted bugs). Here it goes, as it is, into ``preflight.gradcheck``
and into ``preflight.course``'s drop-in ``gradient_check`` / ``gradient_check_n``: the course's own published
figures come out (relative difference 0.2850931567761623 with the bugs, 1.1890913024229996e-07 fixed; 1-D:
7.814075313343006e-11 at x, theta = 3, 4 and 2.919335883291695e-10 at 2, 4, the values the course's notebooks
check), and preflight's report names the tensors (W2 x2, b1 x4), the elements and the kind of bug.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import preflight
from preflight.cli import main
from preflight.course import (
    COURSE_THRESHOLD,
    EXERCISE_SHAPES,
    course_check,
    course_check_n,
    dictionary_to_vector,
    gradient_check,
    gradient_check_n,
    gradients_to_vector,
    vector_to_dictionary,
)

from . import course_exercise as learner

#: The course's published figures (its notebook's expected_values and its 1-D test cases).
COURSE_BUGGY, COURSE_FIXED = 0.2850931567761623, 1.1890913024229996e-07
COURSE_1D = {(3, 4): 7.814075313343006e-11, (2, 4): 2.919335883291695e-10}


def exercise(fixed: bool) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """The course's cell, as the learner runs it."""
    X, Y, parameters = learner.gradient_check_n_test_case()
    _, cache = learner.forward_propagation_n(X, Y, parameters)
    backward = learner.backward_propagation_n_fixed if fixed else learner.backward_propagation_n
    gradients = backward(X, Y, cache)
    return X, Y, parameters, gradients


def test_the_learners_code_pasted_into_gradcheck_gets_the_localized_verdict() -> None:
    X, Y, parameters, gradients = exercise(fixed=False)
    before = {k: v.copy() for k, v in parameters.items()}
    report = preflight.gradcheck(lambda p: learner.forward_propagation_n(X, Y, p)[0], parameters, gradients)
    assert not report.passed
    assert sorted(n for n, r in report.parameters.items() if not r.passed) == ["W2", "b1"]
    assert report.hints == ["b1: analytic = 4.00 x numeric", "W2: analytic = 2.00 x numeric"]
    assert report.notes == [
        "grads in the course's naming (dW1 -> W1, db1 -> b1, dW2 -> W2, db2 -> b2, dW3 -> W3, db3 -> b3); "
        "ignored: dZ3, dA2, dZ2, dA1, dZ1 (not parameters)"
    ]
    assert all(np.array_equal(parameters[k], before[k]) for k in before)  # perturbed in place, restored bit for bit
    X, Y, parameters, gradients = exercise(fixed=True)
    assert preflight.gradcheck(lambda p: learner.forward_propagation_n(X, Y, p)[0], parameters, gradients).passed


def test_gradient_check_n_reproduces_the_course_and_localizes_its_bugs(capsys: pytest.CaptureFixture[str]) -> None:
    X, Y, parameters, gradients = exercise(fixed=False)
    before = {k: v.copy() for k, v in [*parameters.items(), *gradients.items()]}
    difference = gradient_check_n(parameters, gradients, X, Y, learner.forward_propagation_n, 1e-7)
    assert all(np.array_equal(before[k], v) for k, v in [*parameters.items(), *gradients.items()])
    # The course's number, to the last digit: the same step, loop and formula as its notebook.
    assert type(difference) is np.float64 and difference == pytest.approx(COURSE_BUGGY, rel=1e-12, abs=0)
    assert difference == learner.gradient_check_n(parameters, gradients, X, Y)
    out = capsys.readouterr().out
    assert out.startswith(f"There is a mistake in the backward propagation! difference = {difference}\n")
    failing = re.findall(r"^(\w+)\s+\|\s+\S+\s+\|.*\| FAIL$", out, re.M)
    assert sorted(failing) == ["W2", "b1"]
    assert "  - b1: analytic = 4.00 x numeric\n  - W2: analytic = 2.00 x numeric" in out
    assert re.search(r"^  b1\[0, 0\]: analytic 2\.53163, numeric 0\.632908", out, re.M)  # which element
    assert "ignored: dZ3, dA2, dZ2, dA1, dZ1 (not parameters)" in out
    assert "poor step" not in out  # 1e-7 is a fine step in float64


def test_gradient_check_n_passes_the_fixed_backward_pass(capsys: pytest.CaptureFixture[str]) -> None:
    X, Y, parameters, gradients = exercise(fixed=True)
    difference = gradient_check_n(parameters, gradients, X, Y, learner.forward_propagation_n)
    # The fixed figure is rounding noise of eps = 1e-7 steps: reproduced here to the digit, asserted to 1e-6.
    assert difference == pytest.approx(COURSE_FIXED, rel=1e-6)
    assert difference < COURSE_THRESHOLD
    out = capsys.readouterr().out
    assert out.startswith("Your backward propagation works perfectly fine! difference = 1.1890")
    assert "Gradient check: PASSED (float64" in out and "FAIL" not in out


def test_course_check_n_returns_the_report_with_a_missing_one_over_m_named() -> None:
    X, Y, parameters, _ = exercise(fixed=True)
    _, cache = learner.forward_propagation_n(X, Y, parameters)
    gradients = learner.backward_propagation_n_fixed(X, Y, cache)
    gradients["dW3"] = gradients["dW3"] * X.shape[1]  # the learner forgot the 1/m of dW3
    check = course_check_n(parameters, gradients, X, Y, learner.forward_propagation_n)
    assert not check.passed and check.difference > COURSE_THRESHOLD
    assert check.report.hints == ["W3: analytic = 3.00 x numeric (a missing 1/m with m = 3?)"]
    assert str(check).startswith(check.message + "\n\npreflight on the same gradient:\nGradient check: FAILED")


def test_float32_notes_that_epsilon_1e7_is_a_poor_step_and_what_preflight_used(
    capsys: pytest.CaptureFixture[str],
) -> None:
    X, Y, parameters, _ = exercise(fixed=True)
    parameters = {k: v.astype(np.float32) for k, v in parameters.items()}
    X = X.astype(np.float32)
    _, cache = learner.forward_propagation_n(X, Y, parameters)
    gradients = learner.backward_propagation_n_fixed(X, Y, cache)
    difference = gradient_check_n(parameters, gradients, X, Y, learner.forward_propagation_n)
    out = capsys.readouterr().out
    # The course's check fails a correct float32 gradient: its step is at float32's resolution.
    assert difference > 0.1 and out.startswith("There is a mistake in the backward propagation!")
    assert "Gradient check: PASSED (float32" in out
    note = re.search(r"^note: epsilon = 1e-07 is a poor step in float32: .*$", out, re.M)
    assert note and "machine epsilon is 1.2e-07" in note.group() and "preflight used the step cbrt(eps)" in note.group()
    assert re.search(r"0\.0049 to 0\.0\d+ here", note.group())  # cbrt(2**-23) = 4.9e-3 times max(1, |theta_i|)


def test_the_1d_exercise_reproduces_the_course(capsys: pytest.CaptureFixture[str]) -> None:
    for (x, theta), expected in COURSE_1D.items():
        difference = gradient_check(x, theta, learner.forward_propagation, learner.backward_propagation)
        assert difference == pytest.approx(expected, rel=1e-12, abs=0)
        out = capsys.readouterr().out
        assert out.startswith(f"Your backward propagation works perfectly fine! difference = {difference}\n")
        assert "Gradient check: PASSED (float64" in out


def test_the_1d_exercise_with_a_wrong_backward_is_localized() -> None:
    check = course_check(3, 4, learner.forward_propagation, learner.backward_propagation_wrong)
    assert check.message.startswith("There is a mistake in the backward propagation!")
    assert not check.passed and check.report.hints == ["theta: analytic = 1.33 x numeric"]
    report = preflight.gradcheck(
        lambda p: learner.forward_propagation(3, p), np.array(4.0), learner.backward_propagation_wrong(3, 4)
    )
    assert not report.passed and report.hints == ["params: analytic = 1.33 x numeric"]


def test_the_course_call_with_epsilon_in_fifth_place_is_an_error_that_shows_the_call() -> None:
    X, Y, parameters, gradients = exercise(fixed=True)
    with pytest.raises(ValueError, match=r"^forward_propagation_n: expected your function .* got 1e-07") as caught:
        gradient_check_n(parameters, gradients, X, Y, 1e-7, True)  # type: ignore[arg-type]
    assert "gradient_check_n(parameters, gradients, X, Y, forward_propagation_n, 1e-7)" in str(caught.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: g.pop("db3"), r"gradients: expected the course's keys .* missing \['db3'\]"),
        (lambda g: g.update(dW2=g["dW2"][:, :2]), r"gradients: expected 47 entries"),
    ],
)
def test_incomplete_gradients_are_errors_naming_the_key(change: Any, message: str) -> None:
    X, Y, parameters, gradients = exercise(fixed=True)
    change(gradients)
    with pytest.raises(ValueError, match=message):
        gradient_check_n(parameters, gradients, X, Y, learner.forward_propagation_n)


def test_vectors_match_the_course_helpers_entry_by_entry() -> None:
    _, _, parameters, gradients = exercise(fixed=False)
    theta, keys = dictionary_to_vector(parameters)
    course_theta, course_keys = learner.dictionary_to_vector(parameters)
    assert theta.shape == (47, 1) and np.array_equal(theta, course_theta) and keys == course_keys
    assert np.array_equal(gradients_to_vector(gradients), learner.gradients_to_vector(gradients))
    ours, theirs = vector_to_dictionary(theta), learner.vector_to_dictionary(theta)
    assert list(ours) == list(theirs) == list(EXERCISE_SHAPES)
    assert all(np.array_equal(ours[k], theirs[k]) and ours[k].shape == theirs[k].shape for k in ours)


def test_vectors_generalize_to_any_depth_and_round_trip() -> None:
    rng = np.random.default_rng(0)
    params = {
        f"{kind}{layer}": rng.standard_normal((layer + 1, 2) if kind == "W" else (layer + 1, 1))
        for layer in (2, 1, 4, 3)
        for kind in "bW"
    }
    theta, keys = dictionary_to_vector(params)
    assert list(dict.fromkeys(keys)) == ["W1", "b1", "W2", "b2", "W3", "b3", "W4", "b4"]
    back = vector_to_dictionary(theta, params)
    assert all(np.array_equal(back[k], params[k]) for k in params)
    with pytest.raises(ValueError, match=r"theta: expected a vector of 47 entries"):
        vector_to_dictionary(theta)
    with pytest.raises(ValueError, match=r"parameters: expected the course's keys .* missing \['b2'\]"):
        dictionary_to_vector({"W1": np.ones(1), "b1": np.ones(1), "W2": np.ones(1)})


MAKE = """

def make():
    X, Y, parameters = gradient_check_n_test_case()
    cost, cache = forward_propagation_n(X, Y, parameters)
    gradients = {backward}(X, Y, cache)
    return (lambda p: forward_propagation_n(X, Y, p)[0]), parameters, gradients{batch}
"""


@pytest.mark.parametrize("fixed", [False, True])
def test_the_cli_module_make_target_takes_the_learners_code(
    fixed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    backward = "backward_propagation_n_fixed" if fixed else "backward_propagation_n"
    notebook = Path(learner.__file__).read_text(encoding="utf-8") + MAKE.format(backward=backward, batch="")
    module = f"learner_notebook_{backward}"  # one name per module: an imported module stays in sys.modules
    (tmp_path / f"{module}.py").write_text(notebook, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["gradcheck", f"{module}:make"]) == (0 if fixed else 1)
    out = capsys.readouterr().out
    assert "ignored: dZ3, dA2, dZ2, dA1, dZ1 (not parameters)" in out
    if not fixed:
        assert "  - b1: analytic = 4.00 x numeric\n  - W2: analytic = 2.00 x numeric" in out


def test_the_cli_target_may_return_its_batch_for_the_one_over_m_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The fixed backward pass with dW3's 1/m forgotten, and the batch returned as a fourth item.
    make = MAKE.format(backward="backward_propagation_n_fixed", batch=", (X, Y)").replace(
        "    return", '    gradients["dW3"] = gradients["dW3"] * X.shape[1]\n    return'
    )
    (tmp_path / "learner_batch.py").write_text(Path(learner.__file__).read_text(encoding="utf-8") + make)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["gradcheck", "learner_batch:make"]) == 1
    assert "  - W3: analytic = 3.00 x numeric (a missing 1/m with m = 3?)" in capsys.readouterr().out


def test_the_tours_course_section_runs_the_exercise_in_columns_on_the_reference_network(tmp_path: Path) -> None:
    from preflight import tour
    from preflight.report.course_section import course_section

    section = course_section(True, tmp_path)
    assert section.key == "course" and course_section in tour.SECTIONS
    assert section.summary["buggy_failing"] == ["W2", "b1"]
    assert section.summary["buggy_hints"] == ["b1: analytic = 4.00 x numeric", "W2: analytic = 2.00 x numeric"]
    assert (
        section.summary["fixed_passed"] and all(f.expected for f in section.findings) and all(section.lessons.values())
    )
    # The same planted gradients as the course's; the cost from logits moves the course's figure in its 8th digit.
    assert section.summary["difference_buggy"] == pytest.approx(COURSE_BUGGY, rel=1e-7)
    # Fixed, the course's 1.19e-7 was the rounding of its log(sigmoid) cost: from the logits it is far below.
    assert section.summary["difference_fixed"] < COURSE_FIXED / 10
    assert re.search(r"^b1\s+\| 5x1 ", section.text, re.M)  # the biases as the course shapes them


COURSE_PAGE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "course.md"


def test_the_course_page_prints_what_it_shows(capsys: pytest.CaptureFixture[str]) -> None:
    section = COURSE_PAGE.read_text(encoding="utf-8")
    code = "".join(re.findall(r"```python\n(.*?)```", section, re.S))
    shown = re.search(r"\nprints .*?\n```\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    exec(compile(code, str(COURSE_PAGE), "exec"), {"__name__": "course_page"})

    def untimed(text: str) -> str:  # the one figure that depends on the machine
        return re.sub(r"evaluations, \d+\.\d\d s\)", "evaluations, ... s)", text)

    assert untimed(capsys.readouterr().out) == untimed(shown)


def test_a_course_check_renders_in_a_notebook_and_as_json() -> None:
    X, Y, parameters, gradients = exercise(fixed=False)
    check = course_check_n(parameters, gradients, X, Y, learner.forward_propagation_n)
    assert repr(check).startswith(
        "<CourseCheck difference 0.2850931568 (course: a mistake); preflight: <GradcheckReport"
    )
    page = check._repr_html_()
    assert check.message in page and "Gradient check FAILED" in page and "<table>" in page
    assert check.to_dict()["difference"] == float(check.difference)
    assert check.to_dict()["report"]["passed"] is False
