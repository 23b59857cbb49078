"""check_function against torch.autograd.gradcheck on PyTorch's own op database (OpInfo: a suite we did not write).

Every op of ``op_db`` that supports autograd in float64: its first two small samples (at most MAX_ELEMENTS elements
in all, in op_db's order; the smallest others where it has fewer), plus its first sample with an empty tensor where
it has one (tensor lists, as cat's, flattened into separate arguments). For each,
check_function's verdict (backward, what gradcheck checks by default) must equal gradcheck's, except on the named
list :data:`TORCH_WRONG` below, and check_function must never raise.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")  # torch's OpInfo module imports it

from preflight.torch import check_function  # noqa: E402

pytestmark = pytest.mark.slow

SAMPLES_PER_OP = 2
#: A small sample: at most this many elements in all its tensors. An op's first SAMPLES_PER_OP small samples (in
#: op_db's order) are taken; an op without enough of them takes its smallest others up to FALLBACK_ELEMENTS.
MAX_ELEMENTS = 40
#: Larger samples are left out: both checkers cost two or more evaluations per element (this leaves out the few ops
#: whose smallest sample has thousands of elements).
FALLBACK_ELEMENTS = 1200
#: Samples where torch.autograd.gradcheck's verdict (default settings) is the wrong one, with the reason.
NARROW_OUTPUT = (
    "a cast of the float64 input to a narrower dtype: the backward (a cast back) is right, but gradcheck's float64 "
    "differences (eps = 1e-6) of an output rounded to float32 or float16 err by 1e-2 and more, beyond its tolerance; "
    "check_function measures the output's own rounding"
)
TORCH_WRONG: dict[str, str] = {
    "float": NARROW_OUTPUT,
    "half": NARROW_OUTPUT,
    "bfloat16": NARROW_OUTPUT,
    "cfloat": NARROW_OUTPUT,
    "chalf": NARROW_OUTPUT,
    "nn.functional.hardsigmoid": "torch's float64 backward multiplies by 1/6 rounded to float32 (0.1666666716), a "
    "relative error of 3e-8 in every entry, which float64 differences resolve and gradcheck's rtol = 1e-3 hides",
}
#: Samples whose op computes its forward less accurately than float64 (an approximation), so that the slope of the
#: function as implemented, which check_function measures, differs from the exact derivative the backward returns;
#: gradcheck's tolerance (atol 1e-5, rtol 1e-3) is far wider than the difference.
INACCURATE_FORWARD = (
    "torch's float64 trigamma (polygamma(1, x)) errs by up to 4e-10 relative (0.6263238468550026 at x = 2.0474, "
    "mpmath: 0.6263238466273717): its slope differs from polygamma(2, x), the exact derivative, by 7e-10"
)
FORWARD_INACCURATE: dict[str, str] = {
    **dict.fromkeys([f"polygamma.polygamma_n_{n}" for n in range(5)], INACCURATE_FORWARD),
    "special.polygamma.special_polygamma_n_0": INACCURATE_FORWARD,
    "special.ndtr": "torch's float64 ndtr(x) has an absolute, not a relative, accuracy of about 1e-16: for x below "
    "-8 it is a plateau at 2**-54 (5.55e-17 against the true 4.6e-17 at x = -8.3), whose slope is 0 where the "
    "backward returns the true density 3.8e-16",
}


@dataclass
class Case:
    """One sample of one op, as a function of its tensors (tensor lists flattened into separate arguments)."""

    op: Any
    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    empty: bool


def flat_args(sample: Any) -> tuple[Any, ...]:
    """The sample's arguments, tensor lists (cat, stack, ...) flattened into separate arguments."""
    flat: list[Any] = []
    for a in (sample.input, *sample.args):
        if isinstance(a, (list, tuple)) and a and all(isinstance(t, torch.Tensor) for t in a):
            flat.extend(a)
        else:
            flat.append(a)
    return tuple(flat)


def as_function(op: Any, sample: Any) -> Callable[..., Any]:
    """The op on this sample as a function of :func:`flat_args` (tensor lists rebuilt), as OpInfo's tests call it."""
    layout = [
        len(a) if isinstance(a, (list, tuple)) and a and all(isinstance(t, torch.Tensor) for t in a) else None
        for a in (sample.input, *sample.args)
    ]

    def fn(*values: Any) -> Any:
        args, k = [], 0
        for n in layout:
            args.append(values[k] if n is None else list(values[k : k + n]))
            k += 1 if n is None else n
        first, *rest = args
        return sample.output_process_fn_grad(op.gradcheck_wrapper(op.get_op(), first, *rest, **sample.kwargs))

    return fn


def opinfo_cases() -> Iterator[Case]:
    """The sweep's samples, op by op (module docstring)."""
    from torch.testing._internal.common_methods_invocations import op_db

    for op in op_db:
        if not op.supports_autograd or torch.float64 not in op.supported_backward_dtypes("cpu"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            samples = list(op.sample_inputs("cpu", torch.float64, requires_grad=True))
        small, larger, empty = [], [], []
        for order, sample in enumerate(samples):
            tensors = [t for t in flat_args(sample) if isinstance(t, torch.Tensor)]
            if not any(t.requires_grad for t in tensors) or any(t.layout != torch.strided for t in tensors):
                continue  # nothing to differentiate, or sparse inputs (check_function perturbs dense tensors)
            size = sum(t.numel() for t in tensors)
            if any(t.numel() == 0 for t in tensors):
                empty.append((order, sample))
            elif size <= MAX_ELEMENTS:
                small.append((order, sample))
            elif size <= FALLBACK_ELEMENTS:
                larger.append((size, order, sample))
        chosen = small[:SAMPLES_PER_OP]
        chosen += [(order, s) for _, order, s in sorted(larger, key=lambda t: t[:2])][: SAMPLES_PER_OP - len(chosen)]
        name = f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name
        for _, sample in sorted(chosen + empty[:1], key=lambda t: t[0]):
            yield Case(op, name, as_function(op, sample), flat_args(sample), any(sample is s for _, s in empty[:1]))


@dataclass
class Outcome:
    name: str
    theirs: bool | None  # None: gradcheck raised
    ours: bool | None  # None: check_function raised
    error: str | None
    seconds: float
    empty: bool
    verdict: str = ""


def run_case(case: Case) -> Outcome:
    """Both verdicts on one sample; an exception of check_function is recorded, not raised."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            theirs: bool | None = torch.autograd.gradcheck(
                case.fn, case.args, raise_exception=False, nondet_tol=case.op.gradcheck_nondet_tol
            )
        except Exception:  # gradcheck refuses some samples (no differentiable output, ...): it did not pass them
            theirs = None
        try:
            report = check_function(case.fn, *case.args, forward_ad=False)
        except Exception as exc:  # recorded: the sweep asserts there are none
            return Outcome(
                case.name, theirs, None, f"{type(exc).__name__}: {exc}"[:300], time.perf_counter() - start, case.empty
            )
    return Outcome(case.name, theirs, report.passed, None, time.perf_counter() - start, case.empty, report.verdict)


def test_check_function_agrees_with_gradcheck_on_opinfo(record_property: Any) -> None:
    start = time.perf_counter()
    outcomes = [run_case(case) for case in opinfo_cases()]
    errors = [f"{o.name}: {o.error}" for o in outcomes if o.error is not None]
    named = TORCH_WRONG | FORWARD_INACCURATE
    disagree = [o for o in outcomes if o.error is None and o.ours != o.theirs]
    unnamed = [f"{o.name}: gradcheck {o.theirs}, ours {o.verdict}" for o in disagree if o.name not in named]
    groups = {
        title: sum(o.name in names for o in disagree)
        for title, names in (
            ("torch wrong", TORCH_WRONG),
            ("forward inaccurate", FORWARD_INACCURATE),
        )
    }
    agree = Counter(o.verdict for o in outcomes if o.error is None and o.ours == o.theirs)
    record_property("opinfo_samples", len(outcomes))
    print(
        f"\nOpInfo (float64): {len({o.name for o in outcomes})} ops and variants, {len(outcomes)} samples "
        f"({sum(o.empty for o in outcomes)} with an empty tensor), {time.perf_counter() - start:.0f} s\n"
        f"agree: {sum(agree.values())} (both pass: {agree['PASSED']}, both fail: {agree['FAILED']})"
        f"\ndisagree: {len(disagree)} ({', '.join(f'{k}: {v}' for k, v in groups.items())}, unnamed: {len(unnamed)})\n"
        f"errors: {len(errors)}"
    )
    for o in disagree:
        print(f"  {o.name}: gradcheck {'pass' if o.theirs else 'FAIL'}, check_function {o.verdict}")
    assert errors == []
    assert unnamed == []
    # Strict: a named sample that agrees now is to be taken off its list.
    assert {o.name for o in disagree} == set(named)
    assert len(outcomes) >= 1000
