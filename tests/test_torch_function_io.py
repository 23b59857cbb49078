"""check_function's inputs and outputs: complex values, empty tensors, non-finite inputs, zero placeholder
gradients, several outputs, steps at a domain's edge or across a pole, and the forward-mode check."""

from __future__ import annotations

import math
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from preflight.torch import check_function  # noqa: E402

from .second_order_functions import from_output  # noqa: E402

F64, F32 = torch.float64, torch.float32


def scale_by(c: complex, *, conjugate: bool) -> Any:
    """``y = c x`` for a real x (a complex output); the backward is Re(conj(c) g), or Re(c g) when ``conjugate`` is
    False (the conjugate forgotten: wrong wherever Im c != 0)."""

    class Scale(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return x * c

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            pass

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return (g * (c.conjugate() if conjugate else c)).real

    return Scale.apply


@pytest.mark.parametrize("dtype", [F64, F32])
def test_complex_outputs_are_checked_through_their_real_and_imaginary_parts(dtype: Any) -> None:
    x = torch.randn(3, 4, dtype=dtype, generator=torch.Generator().manual_seed(0))
    for fn in (torch.fft.fft, torch.fft.rfft, lambda t: torch.polar(t.abs() + 1, t), scale_by(1 + 2j, conjugate=True)):
        report = check_function(fn, x)
        assert report.passed, str(report)
        assert any("real and imaginary parts" in n for n in report.notes)
    wrong = check_function(scale_by(1 + 2j, conjugate=False), x)
    assert not wrong.passed
    worst = wrong.parameters["input0"].failing()[0]
    assert worst.output is not None and worst.output[-1] in (0, 1)  # the part of the output element is named


def test_complex_inputs_are_checked_as_real_and_imaginary_pairs() -> None:
    z = torch.randn(3, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))

    class SquaredModulus(torch.autograd.Function):
        @staticmethod
        def forward(z: Any) -> Any:
            return (z * z.conj()).real

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (z,) = ctx.saved_tensors
            return 2 * z.conj() * g  # torch's convention is 2 z g: the conjugate is the bug

    report = check_function(torch.abs, z)
    assert report.passed, str(report)
    assert report.parameters["input0"].shape == (3, 2)
    assert check_function(lambda t: (t * t.conj()).real, z).passed
    wrong = check_function(SquaredModulus.apply, z)
    assert not wrong.passed
    assert {c.index[-1] for c in wrong.parameters["input0"].failing()} == {1}  # the imaginary parts are wrong


def test_empty_tensors_pass_with_nothing_to_check() -> None:
    for fn, x in (
        (torch.sin, torch.zeros(0, 3, dtype=F64)),
        (lambda t: t[:0] * 2, torch.randn(4, dtype=F64)),
        (lambda t: torch.linalg.eigvals(t), torch.zeros(0, 0, dtype=F64)),
    ):
        report = check_function(fn, x)
        assert report.passed and report.verdict == "PASSED"
        assert report.checked == 0 and "0 elements, nothing to check" in " ".join(report.notes)


def test_a_check_where_every_entry_was_set_aside_is_not_a_pass() -> None:
    # A staircase finer than the step (rounding to 1e-4 under a step of 6e-6 x 20): round's derivative is 0, the
    # differences see the stairs, every entry is set aside, nothing is judged.
    x = torch.tensor([20.00003, -19.00007, 20.5], dtype=F64)
    report = check_function(lambda t: torch.round(t.sum() * 1e4) / 1e4, x)
    assert report.checked == 0 and len(report.kinks) == 3
    assert not report.passed and report.verdict == "INCONCLUSIVE"
    assert report.parameters["input0"].verdict == "all kinks"
    assert any("inconclusive" in n for n in report.notes)


def test_non_finite_inputs_get_no_step_and_are_named() -> None:
    x = torch.tensor([[1.0, -math.inf, 0.5], [0.2, 0.1, -0.3]], dtype=F64)
    report = check_function(lambda t: torch.softmax(t, 1), x)
    assert report.passed, str(report)
    assert report.checked == 6 * 5  # the -inf element's column is not judged
    note = next(n for n in report.notes if "not finite" in n)
    assert "input0[0, 1] = -inf" in note and "no step" in note
    everything = check_function(torch.exp, torch.full((3,), -math.inf, dtype=F64))
    assert everything.passed and any("nothing to check" in n for n in everything.notes)


def test_zero_placeholder_and_expanded_gradients_are_materialized() -> None:
    class SumToAll(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return x.sum().expand(3).clone()

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.shape = inputs[0].shape

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            return g.sum().expand(ctx.shape)  # a zero-stride gradient

    x = torch.randn(2, 3, dtype=F64)
    assert check_function(torch.sgn, x).passed  # autograd's ZeroTensor gradient
    assert check_function(SumToAll.apply, x).passed


def mean_and_scaled(handles_missing: bool) -> Any:
    """``(2 x, mean(x))`` with a backward that, unless ``handles_missing``, gives up when ``2 x`` has no gradient
    (as native_group_norm's does when only its mean and rstd feed the loss)."""

    class MeanAndScaled(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return 2 * x, x.mean()

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.set_materialize_grads(False)
            ctx.shape = inputs[0].shape

        @staticmethod
        def backward(ctx: Any, g_scaled: Any, g_mean: Any) -> Any:
            if g_scaled is None and not handles_missing:
                return None
            grad = torch.zeros(ctx.shape, dtype=torch.float64) if g_scaled is None else 2 * g_scaled
            return grad if g_mean is None else grad + g_mean / math.prod(ctx.shape)

    return MeanAndScaled.apply


def test_each_outputs_backward_is_checked_on_its_own() -> None:
    x = torch.randn(2, 3, dtype=F64)
    assert check_function(mean_and_scaled(True), x).passed
    wrong = check_function(mean_and_scaled(False), x)
    assert not wrong.passed
    assert any("backward of output(s) 1 taken alone" in n for n in wrong.notes)
    assert {c.output[0] for c in wrong.parameters["input0"].failing() if c.output} == {1}


def asin_function(factor: float) -> Any:
    class Asin(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return torch.asin(x)

        @staticmethod
        def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return factor * g / torch.sqrt(1 - x * x)

    return Asin.apply


@pytest.mark.parametrize("dtype", [F64, F32])
@pytest.mark.parametrize("op", [torch.asin, torch.atanh, torch.erfinv, torch.logit])
def test_near_a_domain_edge_the_step_shrinks_instead_of_failing(dtype: Any, op: Any) -> None:
    # 1e-4 from the edges of (-1, 1), or of (0, 1) for logit: closer than twice the default step in float32 (4.9e-3),
    # 1e-6 in float64 (6e-6).
    d = 1e-4 if dtype == F32 else 1e-6
    points = [0.3, d, 1 - d, 0.5] if op is torch.logit else [0.3, -1 + d, 1 - d, -0.5]
    report = check_function(op, torch.tensor(points, dtype=dtype))
    assert report.passed, str(report)
    assert any("step shrunk" in n and "input0[1], input0[2]" in n for n in report.notes), report.notes


def test_an_element_at_the_edge_is_named_not_checkable_and_a_bug_near_it_still_fails() -> None:
    x = torch.tensor([0.3, 1.0, 0.9995], dtype=F32)
    report = check_function(asin_function(1.0), x)
    assert report.passed, str(report)
    assert any("not checkable" in n and "input0[1]" in n for n in report.notes)
    assert report.parameters["input0"].checked == 6
    wrong = check_function(asin_function(1.01), torch.tensor([0.3, 0.9995], dtype=F32))
    assert not wrong.passed
    assert {c.index for c in wrong.parameters["input0"].failing()} == {(0,), (1,)}


def test_across_a_pole_the_step_shrinks_until_the_estimates_settle() -> None:
    x = torch.tensor([0.3, 1.57, -1.5705, 1.0], dtype=F32)  # tan's pole at -pi/2 is 3e-4 from x[2]
    report = check_function(torch.tan, x)
    assert report.passed, str(report)
    assert any("smaller step" in n and "input0[2]" in n for n in report.notes)

    Tan = from_output(torch.tan, lambda y: (1 + y * y) * 1.01)

    assert not check_function(Tan.apply, x).passed


def test_a_float32_staircase_is_never_a_failure() -> None:
    x = torch.randn(8, dtype=F32, generator=torch.Generator().manual_seed(2))
    report = check_function(lambda t: torch.round(t, decimals=3), x)
    assert report.verdict in ("PASSED", "INCONCLUSIVE"), str(report)


def test_the_forward_mode_check_finds_the_jvp_bugs_gradcheck_defaults_miss() -> None:
    # The PyTorch guide's reproducers (docs/guides/pytorch.md): torch's JVPs of cholesky_inverse (a triangular input)
    # and logcumsumexp are wrong while their backwards are right; torch.autograd.gradcheck with default settings
    # checks only the backward.
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 4, dtype=F64, generator=g)
    lower = torch.linalg.cholesky(a @ a.T + torch.eye(4, dtype=F64))
    x = torch.rand(3, 4, 5, dtype=F64, generator=g) * 18 - 9
    cases = (
        (lambda t: torch.cholesky_inverse(torch.tril(t)), lower, False),
        (lambda t: torch.logcumsumexp(t, 1), x, True),
    )
    for fn, arg, torch_forward_passes in cases:
        report = check_function(fn, arg)
        assert report.parameters["input0"].passed and report.forward_ad is not None
        assert not report.forward_ad["input0"].passed and not report.passed
        leaf = arg.clone().requires_grad_()
        assert torch.autograd.gradcheck(fn, (leaf,))
        forward = torch.autograd.gradcheck(fn, (leaf,), check_forward_ad=True, raise_exception=False)
        assert forward == torch_forward_passes  # logcumsumexp's JVP error (6e-6) is inside gradcheck's atol
