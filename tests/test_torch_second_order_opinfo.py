"""check_function(order=2) against torch.autograd.gradgradcheck on PyTorch's own OpInfo samples.

For every op of ``op_db`` whose OpInfo says it supports autograd and gradgrad in float64, one small sample (at most
``MAX_ELEMENTS`` elements in all its tensors, the first such in its sample list): our verdict (``passed``) must equal
gradgradcheck's, or the op is one of :data:`DISAGREEMENTS`, each investigated and named with what it is; raising
on both sides counts as agreeing. torch 2.13.0 CPU (the version the project pins).

Agreeing for reasons worth knowing: ``linalg.norm.subgradients_at_zero`` (the zero vector) fails on both sides,
because autograd's double backward there is NaN (gradgradcheck compares it with differences across the kink);
``_safe_softmax``'s sample holds -inf, whose entries check_function leaves unchecked (a note says so).
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")  # torch's OpInfo module imports it

from preflight.torch import check_function  # noqa: E402

pytestmark = pytest.mark.slow

#: Tensors of a sample, all together: the cost of both checks is linear in it.
MAX_ELEMENTS = 20
#: op.variant -> (what we report, why the verdicts differ). Investigated one by one (see each reason).
DISAGREEMENTS = {
    "nn.functional.max_unpool3d.": (
        "first order fails",
        "the sample's indices repeat (12 three times, 14 twice): the forward keeps one write, the backward gathers for "
        "every input; torch.autograd.gradcheck fails this sample too, gradgradcheck checks only the second order",
    ),
    "normal.": (
        "first order fails",
        "torch defines normal(mean, std)'s gradient as 0 (derivatives.yaml: no reparametrization) while OpInfo's "
        "seeded wrapper makes the sample move 1:1 with mean and by the noise with std; gradgradcheck checks only the "
        "derivative of that zero",
    ),
    "special.ndtr.": (
        "first order fails",
        "at x = -8.3157 torch's float64 ndtr is flat (5.551e-17 = 2^-54 on both sides of the step: 0.5 (1 + erf) "
        "cancels) while its derivative, the Gaussian density, is 3.8e-16; gradcheck's atol 1e-5 cannot see a "
        "derivative that small",
    ),
    "native_group_norm.": (
        "first order fails",
        "its backward returns None for the mean and rstd outputs (which move with the input) when only they carry a "
        "gradient: the first-order check of each output alone catches it (issue #12), torch.autograd.gradcheck fails "
        "this sample too; gradgradcheck checks only the second order",
    ),
    "digamma.": (
        "second order fails",
        "torch's trigamma (digamma's backward) errs by ~4e-10 relative (0.6263238468550026 at x = 2.0474, mpmath "
        "0.6263238466273717), so its differences disagree with polygamma(2, x), digamma's double backward, by ~6e-10: "
        "beyond float64 rounding, far below gradgradcheck's rtol 1e-3",
    ),
    "unfold.": (
        "raises IndexError",
        "a 0-d input: torch's vmap of unfold's double backward (check_function's batched Jacobian) raises IndexError, "
        "which check_function's row-by-row fallback does not catch (only RuntimeError, NotImplementedError)",
    ),
    "unfold_copy.": ("raises IndexError", "as unfold (the same backward)"),
}


def small_sample(op: Any) -> Any:
    for sample in op.sample_inputs("cpu", torch.float64, requires_grad=True):
        args = (sample.input, *sample.args)
        if not isinstance(sample.input, torch.Tensor) or any(isinstance(a, (list, tuple)) for a in args):
            continue  # tensor lists (cat, stack): check_function takes tensors as separate inputs
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if 0 < sum(t.numel() for t in tensors) <= MAX_ELEMENTS and all(t.numel() > 0 for t in tensors):
            return sample
    return None


def as_function(op: Any, sample: Any) -> Any:
    def fn(*args: Any) -> Any:
        return sample.output_process_fn_grad(op.gradcheck_wrapper(op.get_op(), *args, **sample.kwargs))

    return fn


def differentiable_float64(fn: Any, args: tuple[Any, ...]) -> bool:
    with torch.no_grad():
        out = fn(*args)
    outs = out if isinstance(out, (tuple, list)) else [out]
    return any(isinstance(o, torch.Tensor) and o.dtype == torch.float64 and o.numel() > 0 for o in outs)


def what_we_report(fn: Any, args: tuple[Any, ...]) -> tuple[bool | str, str]:
    """Our verdict (or "raises <Error>"), and its kind in DISAGREEMENTS' words."""
    try:
        report = check_function(fn, *args, forward_ad=False, order=2)
    except Exception as exc:
        return f"raises {type(exc).__name__}", f"raises {type(exc).__name__}"
    if report.stopped:
        kind = "stopped"
    elif report.second_order is None:
        kind = "first order fails"
    elif not report.passed:
        kind = "second order fails"
    else:
        kind = "passes"
    return report.passed, kind


def test_check_function_order_2_agrees_with_gradgradcheck_on_opinfo(record_property: Any) -> None:
    from torch.testing._internal.common_methods_invocations import op_db

    checked, disagreements, kinds = 0, set(), {}
    for op in op_db:
        if not (op.supports_autograd and op.supports_gradgrad) or torch.float64 not in op.supported_dtypes("cpu"):
            continue
        sample = small_sample(op)
        if sample is None:
            continue
        fn, args = as_function(op, sample), (sample.input, *sample.args)
        if not differentiable_float64(fn, args):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                theirs: bool | str = torch.autograd.gradgradcheck(
                    fn, args, raise_exception=False, nondet_tol=op.gradcheck_nondet_tol
                )
            except Exception as exc:
                theirs = f"raises {type(exc).__name__}"
            ours, kind = what_we_report(fn, args)
        checked += 1
        both_raise = isinstance(theirs, str) and isinstance(ours, str)
        if ours != theirs and not both_raise:
            key = f"{op.name}.{op.variant_test_name}"
            disagreements.add(key)
            kinds[key] = kind
    record_property("opinfo_gradgrad_ops", checked)
    print(f"OpInfo gradgrad: {checked} ops, {len(disagreements)} named disagreements")
    assert disagreements == set(DISAGREEMENTS)
    assert {k: kinds[k] for k in DISAGREEMENTS} == {k: v[0] for k, v in DISAGREEMENTS.items()}
    assert checked >= 300
