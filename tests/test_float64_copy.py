"""A float32 check completed by the same check on a float64 copy (issue #12: every float32 bug >= 1e-3 caught).

The specification of ``reference=True`` (the default) in ``check_module`` and ``check_function`` and of
:func:`preflight.check.reference.with_reference`: a float32 backward whose error float32 differences cannot resolve
is caught and named through the float64 copy; a correct layer still passes; code that does not run in float64 is
checked in float32 alone with a note saying why; the caller's model and tensors are untouched; float64 checks make
no copy.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from preflight import gradcheck  # noqa: E402
from preflight.check.reference import (  # noqa: E402
    FLOAT32_RESOLUTION,
    REFERENCE_NOTE,
    analytic_resolution,
    resolution_floor,
    with_reference,
)
from preflight.torch import check_function, check_module  # noqa: E402

#: One element's gradient off by this much (relative): inside what float32 differences resolve at batch 64 (their
#: tolerance is several noise units over the step, ~1e-4 of an element), 30 times what the float64 copy is held to
#: (FLOAT32_RESOLUTION: 8 float32 ulps of the tensor's largest entry, ~1e-6).
SMALL = 3e-5


class OneElementOff(torch.autograd.Function):
    """``x @ w.T`` whose backward gets ``w``'s element [row, col] wrong by a relative ``SMALL``."""

    @staticmethod
    def forward(ctx: Any, x: Any, w: Any, row: int, col: int) -> Any:
        ctx.save_for_backward(x, w)
        ctx.where = (row, col)
        return x @ w.T

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        x, w = ctx.saved_tensors
        gw = g.T @ x
        gw[ctx.where] = gw[ctx.where] * (1 + SMALL)
        return g @ w, gw, None, None


class Layer(nn.Module):
    def __init__(self, n_in: int, n_out: int, wrong: tuple[int, int] | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in) / n_in**0.5)
        self.bias = nn.Parameter(torch.zeros(n_out))
        self.wrong = wrong

    def forward(self, x: Any) -> Any:
        if self.wrong is None:
            return x @ self.weight.T + self.bias
        return OneElementOff.apply(x, self.weight, *self.wrong) + self.bias


def model_and_batch(wrong: tuple[int, int] | None, seed: int = 0) -> tuple[Any, Any]:
    torch.manual_seed(seed)
    model = nn.Sequential(Layer(6, 16, None), nn.Tanh(), Layer(16, 4, wrong))
    batch = (torch.randn(64, 6), torch.randint(0, 4, (64,)))
    return model, batch


def ce(out: Any, y: Any) -> Any:
    return nn.functional.cross_entropy(out, y)


@pytest.mark.parametrize("seed", range(3))
def test_a_float32_bug_below_float32_resolution_is_caught_and_named_by_the_copy(seed: int) -> None:
    model, batch = model_and_batch((1, 5), seed)
    alone = check_module(model, ce, batch, reference=False)
    report = check_module(model, ce, batch)
    assert alone.passed, "float32 differences resolve this bug: the test would not show the copy's work"
    assert not report.passed and report.worst == "2.weight"
    assert [n for n, r in report.parameters.items() if not r.passed] == ["2.weight"]
    assert report.parameters["2.weight"].failing()[0].index == (1, 5)
    assert report.reference is not None and report.dtype == "float32"
    assert any(n.startswith(f"{REFERENCE_NOTE}: the same check on float64 copies") and "2.weight" in n
               for n in report.notes)  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_a_correct_float32_model_passes_with_its_copy(seed: int) -> None:
    model, batch = model_and_batch(None, seed)
    report = check_module(model, ce, batch)
    assert report.passed and report.reference is not None and report.reference.passed
    alone = check_module(model, ce, batch, reference=False)
    assert report.evaluations == report.reference.evaluations + alone.evaluations


def test_the_callers_model_and_batch_are_untouched() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).train()
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = check_module(model, ce, (x, y))
    assert report.passed and report.reference is not None
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    assert x.dtype == torch.float32 and model.training


def test_a_float64_model_makes_no_copy() -> None:
    model, batch = model_and_batch(None)
    report = check_module(model.double(), ce, (batch[0].double(), batch[1]))
    assert report.passed and report.reference is None
    assert not any(n.startswith(REFERENCE_NOTE) for n in report.notes)


def test_a_sampled_check_makes_a_copy_only_when_asked() -> None:
    model, batch = model_and_batch((1, 5))
    sampled = check_module(model, ce, batch, sample=0.5)
    assert sampled.reference is None
    assert any(n.startswith(f"{REFERENCE_NOTE}: not checked (a sampled check") for n in sampled.notes)
    asked = check_module(model, ce, batch, sample=0.5, reference=True)
    assert asked.reference is not None and asked.reference.sampled


class CastsInside(nn.Module):
    """Computes in float32 whatever its parameters' dtype: a float64 copy proves nothing about it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        return nn.functional.linear(x.float(), self.linear.weight.float(), self.linear.bias.float())


class Float32Only(nn.Module):
    """Builds a float32 tensor of its own: in float64 the matmul raises."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: Any) -> Any:
        return self.linear(x) @ torch.eye(2)


@pytest.mark.parametrize(
    ("model", "why"),
    [(CastsInside(), "the float64 copy still returns float32"), (Float32Only(), "the model does not run in float64")],
)
def test_code_that_does_not_run_in_float64_is_checked_in_float32_alone_with_a_note(model: Any, why: str) -> None:
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    report = check_module(model, ce, (x, y))
    assert report.passed and report.reference is None
    assert any(n.startswith(f"{REFERENCE_NOTE}: not checked (") and why in n for n in report.notes), report.notes


# --- check_function ---------------------------------------------------------------------------------------------


def test_a_functions_float32_bug_below_resolution_is_caught_through_float64_inputs() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 6, generator=generator, requires_grad=True)
    w = torch.randn(5, 6, generator=generator, requires_grad=True)
    alone = check_function(lambda a, b: OneElementOff.apply(a, b, 2, 3), x, w, reference=False)
    report = check_function(lambda a, b: OneElementOff.apply(a, b, 2, 3), x, w)
    assert alone.passed and not report.passed
    assert [n for n, r in report.parameters.items() if not r.passed] == ["input1"]
    assert report.parameters["input1"].failing()[0].index == (2, 3)
    assert x.dtype == w.dtype == torch.float32 and x.grad is None


def test_a_function_that_casts_to_float32_is_checked_alone_with_a_note() -> None:
    x = torch.randn(3, 4)
    report = check_function(lambda t: torch.tanh(t.float()), x)
    assert report.passed and report.reference is None
    assert any("fn returns float32 from float64 inputs" in n for n in report.notes), report.notes


class SixthRoundedToFloat32(torch.autograd.Function):
    """``x / 6`` whose backward multiplies by 1/6 rounded to float32 in every dtype (torch's float64 hardsigmoid
    does): 3e-8 off in float64, exact for a float32 layer."""

    @staticmethod
    def forward(ctx: Any, x: Any) -> Any:
        return x / 6

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return g * torch.tensor(1 / 6, dtype=torch.float32).to(g.dtype)


def test_the_copy_is_held_to_what_float32_promises_not_to_float64s_last_bits() -> None:
    x = torch.linspace(-3, 3, 20, dtype=torch.float64)
    assert not check_function(SixthRoundedToFloat32.apply, x).passed  # a float64 layer: 3e-8 is a bug
    report = check_function(SixthRoundedToFloat32.apply, x.float())
    assert report.passed and report.reference is not None and report.reference.passed
    assert FLOAT32_RESOLUTION == 8 * float(np.finfo(np.float32).eps)
    with analytic_resolution(FLOAT32_RESOLUTION):
        assert resolution_floor(np.array([1 / 6, -0.5])) == pytest.approx(0.5 * FLOAT32_RESOLUTION)


# --- the merge --------------------------------------------------------------------------------------------------


def test_the_merged_report_fails_a_tensor_either_check_fails_and_keeps_float32s_findings() -> None:
    loss = lambda p: float(np.sum(p["w"] ** 3) + np.sum(p["v"] ** 2))  # noqa: E731
    w32, v32 = np.linspace(0.5, 1.5, 4, dtype=np.float32), np.ones(3, np.float32)
    w64, v64 = w32.astype(np.float64), v32.astype(np.float64)
    # w: 2e-6 off, below float32's resolution; v: 10 % off, which float32 catches itself.
    own = gradcheck(loss, {"w": w32, "v": v32}, {"w": 3 * w32**2 * np.float32(1 + 2e-6), "v": 2.2 * v32})
    ref = gradcheck(loss, {"w": w64, "v": v64}, {"w": 3 * w64**2 * (1 + 2e-6), "v": 2.2 * v64})
    merged = with_reference(own, ref)
    assert own.parameters["w"].passed and not merged.parameters["w"].passed
    assert merged.parameters["v"] is own.parameters["v"]
    assert not merged.passed and merged.reference is ref
    assert json.loads(merged.to_json())["reference"]["passed"] is False


def test_a_reference_that_stopped_or_is_missing_leaves_the_float32_verdict_with_a_note() -> None:
    w = np.ones(3, np.float32)
    own = gradcheck(lambda p: float(np.sum(p["w"] ** 2)), {"w": w}, {"w": 2 * w})
    assert with_reference(own, None) is own
    noted = with_reference(own, None, "no float64 copy")
    assert noted.passed and noted.notes[-1] == f"{REFERENCE_NOTE}: not checked (no float64 copy)"


@pytest.mark.parametrize("bad", ["yes", 1, 0.0])
def test_a_reference_that_is_not_a_bool_is_refused_before_anything_runs(bad: Any) -> None:
    model, batch = model_and_batch(None)
    with pytest.raises(ValueError, match=r"^reference: expected True, False or None, got "):
        check_module(model, ce, batch, reference=bad)
    with pytest.raises(ValueError, match=r"^reference: expected True or False, got "):
        check_function(torch.tanh, torch.randn(3), reference=bad)
