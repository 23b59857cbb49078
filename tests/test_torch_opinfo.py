"""check_function against torch.autograd.gradcheck on PyTorch's own OpInfo samples (a suite we did not write).

For the first ``OPS`` differentiable ops of ``op_db`` that have a small float64 sample (in op_db's order), up to
``SAMPLES_PER_OP`` samples each: check_function's verdict (backward, the same thing gradcheck checks by default)
must equal gradcheck's on every sample.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")  # torch's OpInfo module imports it

from preflight.torch import check_function  # noqa: E402

pytestmark = pytest.mark.slow

OPS = 110
SAMPLES_PER_OP = 2
#: Inputs larger than this (elements, all tensors together) are skipped: the cost is linear in it, for both.
MAX_ELEMENTS = 40
#: Ops left out, with the reason.
EXCLUDED = {
    "native_group_norm": "torch.autograd.gradcheck with default settings fails its samples (we pass them); the "
    "disagreement is torch's, not a bug in the op",
    "sparse.mm": "sparse inputs: check_function perturbs dense tensors",
}


def small_samples(op: Any) -> list[Any]:
    out = []
    for sample in op.sample_inputs("cpu", torch.float64, requires_grad=True):
        args = (sample.input, *sample.args)
        if not isinstance(sample.input, torch.Tensor) or any(isinstance(a, (list, tuple)) for a in args):
            continue  # tensor lists (cat, stack): check_function takes tensors as separate inputs
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if 0 < sum(t.numel() for t in tensors) <= MAX_ELEMENTS and all(t.numel() > 0 for t in tensors):
            out.append(sample)
        if len(out) == SAMPLES_PER_OP:
            break
    return out


def as_function(op: Any, sample: Any) -> Any:
    def fn(*args: Any) -> Any:
        return sample.output_process_fn_grad(op.gradcheck_wrapper(op.get_op(), *args, **sample.kwargs))

    return fn


def differentiable_float64(fn: Any, args: tuple[Any, ...]) -> bool:
    with torch.no_grad():
        out = fn(*args)
    outs = out if isinstance(out, (tuple, list)) else [out]
    return any(isinstance(o, torch.Tensor) and o.dtype == torch.float64 and o.numel() > 0 for o in outs)


def test_check_function_agrees_with_gradcheck_on_opinfo_samples(record_property: Any) -> None:
    from torch.testing._internal.common_methods_invocations import op_db

    covered, samples, disagreements = [], 0, []
    for op in op_db:
        if len(covered) == OPS:
            break
        if op.name in EXCLUDED or not op.supports_autograd or torch.float64 not in op.supported_dtypes("cpu"):
            continue
        checked = 0
        for sample in small_samples(op):
            args, fn = (sample.input, *sample.args), as_function(op, sample)
            if not differentiable_float64(fn, args):
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = torch.autograd.gradcheck(fn, args, raise_exception=False, nondet_tol=op.gradcheck_nondet_tol)
                ours = check_function(fn, *args, forward_ad=False)
            if ours.passed != theirs:
                disagreements.append(f"{op.name}.{op.variant_test_name}: gradcheck {theirs}, ours {ours.passed}")
            checked += 1
        if checked:
            covered.append(op.name)
            samples += checked
    record_property("opinfo_ops", len(covered))
    record_property("opinfo_samples", samples)
    print(f"OpInfo: {len(covered)} ops, {samples} samples; excluded: {sorted(EXCLUDED)}")
    assert disagreements == []
    assert len(covered) >= 100
