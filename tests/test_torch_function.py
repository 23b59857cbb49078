"""check_function: custom autograd Functions, correct ones pass (float32 too), planted bugs are caught and localized."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from preflight.torch import check_function  # noqa: E402

from .second_order_functions import LINEAR_BUGS, linear_function  # noqa: E402

BUGS = (None, *LINEAR_BUGS)


def inputs(dtype: Any = torch.float64, seed: int = 0) -> tuple[Any, Any, Any]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 4, dtype=dtype, generator=generator, requires_grad=True)
    w = torch.randn(4, 4, dtype=dtype, generator=generator, requires_grad=True)  # square: a transpose fits
    b = torch.randn(1, 4, dtype=dtype, generator=generator, requires_grad=True)
    return x, w, b


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", range(3))
def test_a_correct_function_passes_in_float64_and_float32(dtype: Any, seed: int) -> None:
    report = check_function(linear_function().apply, *inputs(dtype, seed), names=["x", "W", "b"])
    assert report.passed, str(report)
    assert set(report.parameters) == {"x", "W", "b"}
    assert all(r.checked == 20 * r.worst[0].index.__len__() or r.checked > 0 for r in report.parameters.values())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("bug", "culprit", "hint"),
    [
        ("scale", "W", "2.00 x numeric"),
        ("sign", "x", "sign flip"),
        ("transpose", "W", "transpose"),
        ("broadcast", "b", "b:"),
    ],
)
def test_a_planted_bug_is_caught_and_localized(dtype: Any, bug: str, culprit: str, hint: str) -> None:
    report = check_function(linear_function(bug).apply, *inputs(dtype), names=["x", "W", "b"])
    assert not report.passed
    assert report.worst == culprit
    failing = {name for name, r in report.parameters.items() if not r.passed}
    assert failing == {culprit}
    assert any(hint in h for h in report.hints), report.hints
    worst = report.parameters[culprit].worst[0]
    assert worst.output is not None and len(worst.output) == 3  # (which output, row, column)
    assert abs(worst.analytic - worst.numeric) > worst.tolerance


def test_the_broadcast_bug_names_the_elements_and_outputs_that_disagree() -> None:
    report = check_function(linear_function("broadcast").apply, *inputs(), names=["x", "W", "b"])
    result = report.parameters["b"]
    # b[0, j] feeds output column j of all 5 rows; only row 0 reaches the gradient: 4 rows x 4 columns wrong.
    assert result.failed == 16
    assert {e.output[2] for e in result.worst} <= {0, 1, 2, 3}
    assert all(e.output[1] != 0 for e in result.worst)
    assert "b[" in str(report) and "-> output" in str(report)


def test_the_callers_tensors_are_left_untouched() -> None:
    x, w, b = inputs()
    before = [t.detach().clone() for t in (x, w, b)]
    check_function(linear_function("scale").apply, x, w, b)
    assert all(torch.equal(t, s) for t, s in zip((x, w, b), before, strict=True))
    assert all(t.grad is None for t in (x, w, b))


def test_only_inputs_that_require_grad_are_checked() -> None:
    x, w, b = inputs()
    report = check_function(linear_function("sign").apply, x.detach(), w, b)
    assert set(report.parameters) == {"input1", "input2"}
    assert report.passed  # the broken gradient belongs to x, which is not checked


class Cube(torch.autograd.Function):
    """x**3 with a backward and a forward-mode rule; ``jvp_factor`` plants a bug in the latter."""

    jvp_factor = 1.0

    @staticmethod
    def forward(x: Any) -> Any:
        return x**3

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.x = inputs[0]

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        (x,) = ctx.saved_tensors
        return 3 * x**2 * g

    @staticmethod
    def jvp(ctx: Any, t: Any) -> Any:
        return Cube.jvp_factor * 3 * ctx.x**2 * t


def test_forward_mode_ad_is_checked_where_defined(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.linspace(-1, 1, 6, dtype=torch.float64, requires_grad=True)
    good = check_function(Cube.apply, x)
    assert good.passed and good.forward_ad is not None and good.forward_ad["input0"].passed
    monkeypatch.setattr(Cube, "jvp_factor", -1.0)
    bad = check_function(Cube.apply, x)
    assert not bad.passed
    assert bad.parameters["input0"].passed and not bad.forward_ad["input0"].passed


def test_forward_mode_ad_undefined_is_a_note_not_a_failure() -> None:
    report = check_function(linear_function().apply, *inputs())
    assert report.passed and report.forward_ad is None
    assert any("forward-mode AD not checked" in n for n in report.notes)
    with pytest.raises(ValueError, match="forward_ad"):
        check_function(linear_function().apply, *inputs(), forward_ad=True)


def test_a_random_function_stops_the_check() -> None:
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    report = check_function(lambda t: t * torch.rand(4, dtype=torch.float64), x)
    assert not report.passed and report.stopped is not None and "random" in report.stopped


def test_many_outputs_are_checked_through_random_projections() -> None:
    x = torch.randn(40, 40, dtype=torch.float64, requires_grad=True)
    report = check_function(torch.sin, x, max_outputs=100)
    assert report.passed
    assert any("random projections" in n for n in report.notes)


def test_bad_arguments_are_rejected_with_their_name() -> None:
    with pytest.raises(ValueError, match="inputs"):
        check_function(torch.sin, 3)
    with pytest.raises(ValueError, match="names"):
        check_function(torch.sin, torch.randn(3, dtype=torch.float64), names=["a", "b"])


def test_a_nan_output_is_reported_as_not_finite_not_as_randomness() -> None:
    report = check_function(lambda a: a.log(), torch.tensor([-1.0, 1.0], dtype=torch.float64))
    assert not report.passed and report.stopped is not None
    assert "not finite at the given inputs" in report.stopped and "index (0,) is nan" in report.stopped
    assert "random" not in report.stopped


def test_a_random_function_is_still_caught_where_its_output_has_nan() -> None:
    x = torch.tensor([-1.0, 1.0, 2.0], dtype=torch.float64)
    report = check_function(lambda t: torch.cat([t.log(), t * torch.rand(3, dtype=torch.float64)]), x)
    assert not report.passed and "random" in report.stopped and "index (3,)" in report.stopped


def test_a_step_that_leaves_the_domain_is_shrunk_for_that_element_and_named() -> None:
    # log near 0: the default step (6e-6) crosses into log's undefined side for x[1] = 1e-6 only.
    x = torch.tensor([0.5, 1e-6, 2.0], dtype=torch.float64)
    report = check_function(torch.log, x)
    assert report.passed and report.stopped is None
    assert any("step shrunk" in n and "input0[1]" in n and "input0[0]" not in n for n in report.notes), report.notes
    assert check_function(torch.log, x, eps=1e-7).passed


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_are_rejected_naming_the_dtype(dtype: Any) -> None:
    with pytest.raises(ValueError, match=rf"inputs\[0\]: dtype {str(dtype)[6:]} .*float64"):
        check_function(torch.tanh, torch.randn(3).to(dtype))


def test_a_backward_that_returns_nan_fails_and_names_the_element() -> None:
    class Sine(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return x.sin()

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            out = (g * x.cos()).clone()
            out[1] = float("nan")  # e.g. a 0/0 in a hand-written backward
            return out

    x = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64, requires_grad=True)
    report = check_function(Sine.apply, x, forward_ad=False)
    result = report.parameters["input0"]
    assert not report.passed and result.failed == 4  # input0[1] in each of the 4 outputs' rows
    assert result.worst[0].index == (1,) and result.worst[0].analytic != result.worst[0].analytic  # NaN first
