"""check_function(order=2) and check_module(order=2): planted second-order bugs in custom autograd Functions caught
and located, correct ones passing in float64 and float32, beside torch.autograd.gradgradcheck's verdicts."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from preflight.torch import check_function, check_module  # noqa: E402

from .second_order_functions import CASES, PLANTED, inputs, linear, planted_found, softplus  # noqa: E402

DTYPES = [torch.float64, torch.float32]
CORRECT = [name for name, case in CASES.items() if case[1]]


def names(shapes: tuple[tuple[int, ...], ...]) -> list[str]:
    return ["x", "w", "b"][: len(shapes)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CORRECT)
def test_a_correct_double_backward_passes_in_float64_and_float32(name: str, dtype: Any) -> None:
    make, _, shapes, _ = CASES[name]
    for seed in range(3):
        report = check_function(make(), *inputs(shapes, dtype, seed), order=2, names=names(shapes))
        assert report.passed, str(report)
        assert report.second_order is not None
        assert set(report.second_order) == {*names(shapes), "grad_output"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(PLANTED))
def test_a_planted_second_order_bug_is_caught_and_located(name: str, dtype: Any) -> None:
    make, correct, shapes, _ = CASES[name]
    assert not correct
    culprit, gradient, hint = PLANTED[name]
    report = check_function(make(), *inputs(shapes, dtype), order=2, names=names(shapes))
    assert not report.passed
    assert all(r.passed for r in report.parameters.values()), "the first order is right: only the second is wrong"
    assert report.second_order is not None
    assert not report.second_order[culprit].passed
    worst = next(c for c in report.second_order[culprit].failing() if c.output_name == gradient)
    assert abs(worst.analytic - worst.numeric) > worst.tolerance
    assert f"{culprit}[" in str(report) and f"-> {gradient}[" in str(report)
    assert any(hint in h for h in report.hints), report.hints
    assert all(h.startswith("second order: ") for h in report.hints)


def test_an_entry_set_aside_as_a_kink_leaves_the_block_hints_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """One entry of d(grad x)/dx set aside as a kink: the block hints must still be read from the entries judged
    (they were turned off, and the hint read "x: analytic = 1.10 x numeric" without the block). The float32 seed
    that set one aside (14) no longer does since the noise probe's third direction (no planted case sets one aside
    at seeds 0-19), so the inner check's report is given one kink here."""
    from preflight.torch import second_order

    run = second_order.run_function_check

    def one_set_aside(*args: Any, **kwargs: Any) -> Any:
        report = run(*args, **kwargs)
        x = report.parameters["x"]
        aside = x.worst[-1]
        x = dataclasses.replace(x, worst=x.worst[:-1], kinks=[aside], checked=x.checked - 1)
        return dataclasses.replace(report, parameters={**report.parameters, "x": x})

    monkeypatch.setattr(second_order, "run_function_check", one_set_aside)
    name = "tanh(x @ W.T), curvature x 1.1"
    make, _, shapes, _ = CASES[name]
    report = check_function(make(), *inputs(shapes, torch.float64, 0), order=2, names=names(shapes))
    assert report.second_order is not None and len(report.second_order["x"].kinks) == 1
    assert planted_found(name, report), report.hints


def test_only_the_broken_block_fails() -> None:
    """The product rule half applied in multiply's double backward: d(grad w)/d(grad_output) only."""
    make, _, shapes, _ = CASES["multiply, missing term"]
    report = check_function(make(), *inputs(shapes, torch.float64), order=2, names=["x", "w"])
    assert report.second_order is not None
    assert {n for n, r in report.second_order.items() if not r.passed} == {"grad_output"}
    assert {c.output_name for c in report.second_order["grad_output"].failing()} == {"grad w"}


def test_gradgradcheck_agrees_on_every_planted_case() -> None:
    for name, (make, correct, shapes, _) in CASES.items():
        args = tuple(inputs(shapes, torch.float64))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = torch.autograd.gradgradcheck(make(), args, raise_exception=False)
        assert check_function(make(), *args, order=2).passed == theirs == correct, name


def test_a_first_order_failure_is_reported_as_such() -> None:
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return x**3

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return 6 * x**2 * g  # 2 x the derivative

    report = check_function(Wrong.apply, *inputs(((4,),), torch.float64), order=2, names=["x"])
    assert not report.passed and report.second_order is None
    assert any("second order not checked: the first-order check did not pass" in n for n in report.notes)
    assert report.hints == ["x: analytic = 2.00 x numeric"]


def test_the_callers_tensors_are_left_untouched() -> None:
    args = inputs(((5, 3), (4, 3), (1, 4)), torch.float64)
    before = [a.detach().clone() for a in args]
    check_function(linear(), *args, order=2)
    assert all(torch.equal(a, b) and a.grad is None and a.requires_grad for a, b in zip(args, before, strict=True))


def test_order_is_validated() -> None:
    with pytest.raises(ValueError, match="order: expected 1 or 2, got 3"):
        check_function(torch.tanh, torch.randn(3, dtype=torch.float64), order=3)
    with pytest.raises(ValueError, match="order: expected 1 or 2, got 0"):
        check_module(torch.nn.Linear(2, 1).double(), None, torch.randn(3, 2, dtype=torch.float64), order=0)


# ---------------------------------------------------------------------------------------------- check_module(order=2)


class Softplus(torch.nn.Module):
    """A module around the custom softplus (its Hessian multiplied by ``factor``)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.fn = softplus(factor)

    def forward(self, x: Any) -> Any:
        return self.fn(x)


def model(activation: torch.nn.Module, dtype: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), activation, torch.nn.Linear(6, 3)).to(dtype)


def batch(dtype: Any, m: int = 16) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(m, 4, generator=generator, dtype=torch.float64).to(dtype), torch.arange(m) % 3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [torch.nn.Tanh, torch.nn.ReLU, torch.nn.GELU, lambda: Softplus(1.0)])
def test_check_module_order_2_passes_a_correct_model(activation: Any, dtype: Any) -> None:
    report = check_module(model(activation(), dtype), torch.nn.functional.cross_entropy, batch(dtype), order=2)
    assert report.passed, str(report)
    assert report.second_order is not None
    tensors = ["0.weight", "0.bias", "2.weight", "2.bias"]
    # H v for random directions over every tensor, for each tensor's own direction, and every column (51 <= 2,000).
    assert set(report.second_order) == {
        "H v, v random",
        *(f"H v, v along {n}" for n in tensors),
        *(f"H[:, {n}]" for n in tensors),
    }
    assert sum(r.size for n, r in report.second_order.items() if n.startswith("H[:")) == 51 * 51


@pytest.mark.parametrize("dtype", DTYPES)
def test_check_module_order_2_locates_a_wrong_hessian_inside_the_model(dtype: Any) -> None:
    report = check_module(model(Softplus(2.0), dtype), torch.nn.functional.cross_entropy, batch(dtype), order=2)
    assert not report.passed
    assert all(r.passed for r in report.parameters.values())
    assert report.second_order is not None
    # The custom softplus sits after the first Linear: its curvature enters the first layer's blocks only.
    blocks = next(h for h in report.hints if "failing entries lie in the Hessian blocks" in h)
    assert "H[0.weight, 0.weight]" in blocks and "2.weight, 2.weight" not in blocks
    assert report.second_order["H[:, 2.bias]"].passed


def test_a_double_backward_that_returns_nan_fails_instead_of_passing() -> None:
    """A NaN compares false with every tolerance; the second order reads it as a failure, naming the entry."""

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return x * x

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return NanSlope.apply(x) * g

    class NanSlope(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return 2 * x

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            pass

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return g * float("nan")

    report = check_function(Square.apply, *inputs(((3,),), torch.float64), order=2, names=["x"])
    assert not report.passed and report.second_order is not None
    assert not report.second_order["x"].passed and report.second_order["x"].failed == 9  # NaN x 0 is NaN: every entry
    assert any("not finite at 9 entries (e.g. x[0] -> grad x[0]: analytic nan" in h for h in report.hints)
    assert "x[0] -> grad x[0]: analytic nan" in str(report)
