"""Specification of the one report: every checker returns GradcheckReport, with the same text, dict, JSON and HTML."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import preflight
from preflight.check import Coordinate, GradcheckReport
from preflight.nn import BuggyNetwork, Network


def numpy_black_box(bug: bool) -> GradcheckReport:
    w = np.array([[1.0, 2.0], [3.0, -1.0]])
    return preflight.gradcheck(lambda p: float(np.sum(p["w"] ** 3)), {"w": w}, {"w": (6 if bug else 3) * w**2})


def reference_network(bug: bool) -> GradcheckReport:
    net = (
        BuggyNetwork([3, 4, 2], hidden="tanh", output="softmax", bug="factor-2")
        if bug
        else Network([3, 4, 2], hidden="tanh", output="softmax")
    )
    return preflight.nn.gradcheck(net, net.init(0), np.eye(3), [0, 1, 1])


def torch_module(bug: bool) -> GradcheckReport:
    torch = pytest.importorskip("torch")
    from preflight.torch import check_module

    class Tanh(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, z: Any) -> Any:
            t = z.tanh()
            ctx.save_for_backward(t)
            return t

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (t,) = ctx.saved_tensors
            return g * (1 - t * t) * (2 if bug else 1)

    class Layer(torch.nn.Module):
        def forward(self, z: Any) -> Any:
            return Tanh.apply(z)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), Layer(), torch.nn.Linear(4, 2)).double()
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.randint(0, 2, (6,))
    return check_module(model, torch.nn.functional.cross_entropy, (x, y))


def torch_function(bug: bool) -> GradcheckReport:
    torch = pytest.importorskip("torch")
    from preflight.torch import check_function

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g * x * (1 if bug else 2)

    return check_function(Square.apply, torch.randn(5, dtype=torch.float64))


ENTRY_POINTS: dict[str, Callable[[bool], GradcheckReport]] = {
    "gradcheck": numpy_black_box,
    "nn.gradcheck": reference_network,
    "check_module": torch_module,
    "check_function": torch_function,
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("bug", [False, True])
def test_every_checker_returns_the_one_report(entry: str, bug: bool) -> None:
    report = ENTRY_POINTS[entry](bug)
    assert type(report) is GradcheckReport
    assert report.passed is not bug
    assert report.checked > 0 and report.course_verdict in {"fine", "worrying", "bug"}
    if bug:
        assert report.worst is not None and report.hints
        failing = [c for r in report.parameters.values() for c in r.failing()]
        assert failing and all(isinstance(c, Coordinate) and c.discrepancy > c.tolerance for c in failing)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_to_json_is_a_strict_json_string_of_to_dict(entry: str) -> None:
    report = ENTRY_POINTS[entry](True)
    text = report.to_json()
    assert isinstance(text, str) and "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    assert data["passed"] is False and data["worst"] == report.worst
    assert set(data["parameters"]) == set(report.parameters)
    assert data == json.loads(json.dumps(report.to_dict(), allow_nan=True).replace("NaN", "null"))


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_it_renders_in_a_notebook(entry: str) -> None:
    report = ENTRY_POINTS[entry](True)
    line = repr(report)
    assert "\n" not in line and len(line) < 200 and "FAILED" in line and str(report.worst) in line
    page = report._repr_html_()
    assert page.startswith("<div>") and "FAILED" in page and str(report.worst) in page
    assert all(h.split(":")[0] in page for h in report.hints)


def test_a_jacobian_entry_names_its_output_element() -> None:
    report = torch_function(True)
    worst = report.parameters["input0"].worst[0]
    assert worst.output is not None and "-> output[" in str(report)
    assert report.unit == "Jacobian entries" and "Jacobian entries" in str(report)
