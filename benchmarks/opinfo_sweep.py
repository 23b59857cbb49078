"""check_function against torch.autograd.gradcheck on PyTorch's own op database (OpInfo), float64.

Every op of ``op_db`` that supports autograd and float64, up to 2 samples each, chosen as tests/test_torch_opinfo.py
chooses them (a tensor input, no tensor lists, 1 to 40 elements in all), widened to cover every op: shape arguments
(permute's dims) are allowed, an op without two such samples takes its smallest ones up to 400 elements, ops whose
outputs are complex are kept, and native_group_norm (which that test leaves out because torch's verdict is wrong on
it) is in; sparse inputs are left out (``--with-empty``: samples with empty input tensors too). Both verdicts are on
the backward (``forward_ad=False``; gradcheck's defaults do not check forward mode either).

Printed: agreement counts; every disagreement and every error (ours or torch's) with its message, grouped by kind:
complex outputs, empty tensors, non-finite inputs, zero-placeholder grads, multi-output, domain edges, other. A
sample's kind is read from the sample first (complex, empty, non-finite, several outputs), then from the message.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/opinfo_sweep.py`` (several minutes; ``--ops 50`` for a quick
look, ``--op softmax`` for one op, ``--json out.json`` for every sample's record, ``--dtype float32`` for
check_function on the same samples rounded to float32, against torch's float64 verdict).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the sample selection lives in tests/

from tests.test_torch_opinfo import MAX_ELEMENTS, SAMPLES_PER_OP, as_function

from preflight._util.text import format_table
from preflight.torch import check_function

#: An op without two samples of at most MAX_ELEMENTS elements takes its smallest ones up to this size (the unary
#: ops' samples are 20 x 20): a Jacobian of 400 x 400 entries, 1,600 evaluations for check_function.
FALLBACK_ELEMENTS = 400

KINDS = (
    "complex outputs",
    "empty tensors",
    "non-finite inputs",
    "zero-placeholder grads",
    "multi-output",
    "domain edges",
    "other",
)


@dataclass
class Record:
    op: str
    variant: str
    sample: int
    shapes: str
    torch: str  # "pass", "FAIL", "error"
    ours: str  # "pass", "FAIL", "inconclusive" (nothing it could resolve enough to judge), "stopped", "error"
    kind: str
    torch_message: str
    ours_message: str
    seconds_ours: float
    seconds_torch: float

    @property
    def agree(self) -> bool:
        return self.torch in ("pass", "FAIL") and self.ours in ("pass", "FAIL") and self.torch == self.ours


def selectable(sample: Any, with_empty: bool) -> int | None:
    """Total elements of the sample's tensors, or None when it cannot be passed to check_function as it is."""
    args = (sample.input, *sample.args)
    if not isinstance(sample.input, torch.Tensor):
        return None
    if any(isinstance(a, (list, tuple)) and any(isinstance(t, torch.Tensor) for t in a) for a in args):
        return None  # tensor lists (cat, stack): check_function takes tensors as separate inputs
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if any(t.layout != torch.strided for t in tensors):
        return None  # sparse inputs: check_function perturbs dense tensors
    if not with_empty and any(t.numel() == 0 for t in tensors):
        return None
    return sum(t.numel() for t in tensors)


def sweep_samples(op: Any, with_empty: bool) -> list[Any]:
    """Up to 2 samples: the first ones of at most MAX_ELEMENTS elements (tests/test_torch_opinfo.py's choice, shape
    arguments such as permute's dims allowed), else the smallest up to FALLBACK_ELEMENTS."""
    small, larger = [], []
    for sample in op.sample_inputs("cpu", torch.float64, requires_grad=True):
        size = selectable(sample, with_empty)
        if size is None or size > FALLBACK_ELEMENTS:
            continue
        if size <= MAX_ELEMENTS:
            small.append(sample)
            if len(small) == SAMPLES_PER_OP:
                return small
        else:
            larger.append((size, len(larger), sample))
    return small + [s for _, _, s in sorted(larger, key=lambda t: t[:2])][: SAMPLES_PER_OP - len(small)]


def outputs_of(fn: Any, args: tuple[Any, ...]) -> list[Any]:
    try:
        with torch.no_grad():
            out = fn(*args)
    except Exception:
        return []
    return [o for o in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(o, torch.Tensor)]


def kind_of(args: tuple[Any, ...], outputs: list[Any], messages: str) -> str:
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    text = messages.lower()
    if any(o.is_complex() for o in outputs) or any(t.is_complex() for t in tensors):
        return "complex outputs"
    if any(t.numel() == 0 for t in tensors) or any(o.numel() == 0 for o in outputs):
        return "empty tensors"
    if any(t.is_floating_point() and not bool(t.isfinite().all()) for t in tensors):
        return "non-finite inputs"
    if "zerotensor" in text or "placeholder" in text:
        return "zero-placeholder grads"
    if len([o for o in outputs if o.is_floating_point()]) > 1:
        return "multi-output"
    if "domain" in text or "not finite" in text:
        return "domain edges"
    return "other"


def message(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:220] if lines else ''}"


NARROWER = {torch.float64: torch.float32, torch.complex128: torch.complex64}


def narrowed(value: Any) -> Any:
    """A float64 (complex128) tensor or dtype in float32 (complex64), ``requires_grad`` kept; anything else as is."""
    if isinstance(value, torch.dtype):
        return NARROWER.get(value, value)
    if isinstance(value, torch.Tensor) and value.dtype in NARROWER:
        return value.detach().to(NARROWER[value.dtype]).requires_grad_(value.requires_grad)
    return value


def check_sample(op: Any, index: int, sample: Any, dtype: str = "float64") -> Record:
    """Both verdicts on one sample; with ``dtype="float32"`` check_function runs on the sample's values rounded to
    float32 (its tensors, tensor keywords and dtype arguments), torch's verdict stays the float64 one (the
    reference: gradcheck in float32 fails nearly everything and asks for double)."""
    args, fn = (sample.input, *sample.args), as_function(op, sample)
    ours_sample = sample.transform(narrowed) if dtype == "float32" else sample
    ours_args, ours_fn = (ours_sample.input, *ours_sample.args), as_function(op, ours_sample)
    shapes = " ".join("x".join(map(str, a.shape)) or "()" for a in args if isinstance(a, torch.Tensor))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        try:
            ok = torch.autograd.gradcheck(fn, args, raise_exception=False, nondet_tol=op.gradcheck_nondet_tol)
            theirs, their_message = ("pass" if ok else "FAIL"), ""
        except Exception as exc:
            theirs, their_message = "error", message(exc)
        torch_seconds = time.perf_counter() - start
        start = time.perf_counter()
        try:
            report = check_function(ours_fn, *ours_args, forward_ad=False)
            if report.stopped:
                ours, our_message = "stopped", report.stopped[:220]
            elif report.verdict == "INCONCLUSIVE":
                ours, our_message = "inconclusive", "; ".join(report.notes)[:220]
            else:
                ours = "pass" if report.passed else "FAIL"
                failing = [n for n, r in report.parameters.items() if not r.passed]
                our_message = f"failing: {failing}; hints: {report.hints[:1]}" if failing else ""
        except Exception as exc:
            ours, our_message = "error", message(exc)
        ours_seconds = time.perf_counter() - start
    kind = kind_of(args, outputs_of(fn, args), f"{their_message} {our_message}")
    return Record(
        op.name, op.variant_test_name, index, shapes, theirs, ours, kind, their_message, our_message,
        ours_seconds, torch_seconds,
    )  # fmt: skip


def sweep(limit: int | None, only: list[str], with_empty: bool, dtype: str = "float64") -> tuple[list[Record], int]:
    from torch.testing._internal.common_methods_invocations import op_db

    records, ops = [], 0
    for op in op_db:
        if limit is not None and ops == limit:
            break
        if only and op.name not in only:
            continue
        if not op.supports_autograd or torch.float64 not in op.supported_dtypes("cpu"):
            continue
        try:
            samples = sweep_samples(op, with_empty)
        except Exception as exc:  # a sample generator that fails on this build: say so, go on
            print(f"{op.name}: no samples ({message(exc)})")
            continue
        if samples:
            ops += 1
        for i, sample in enumerate(samples):
            records.append(check_sample(op, i, sample, dtype))
    return records, ops


def report(records: list[Record], ops: int, seconds: float, dtype: str = "float64") -> None:
    outcome = Counter((r.torch, r.ours) for r in records)
    rows = [[f"torch {t}", f"ours {o}", n] for (t, o), n in sorted(outcome.items(), key=lambda kv: -kv[1])]
    agree = sum(r.agree for r in records)
    print(format_table(["torch gradcheck", "check_function", "samples"], rows,
                       title=f"OpInfo, check_function in {dtype} (torch gradcheck in float64): {ops} ops, "
                             f"{len(records)} samples, {seconds:.0f} s"))  # fmt: skip
    false_alarms = sum(r.ours == "FAIL" and r.torch == "pass" for r in records)
    print(f"false alarms (check_function FAIL where gradcheck passes): {false_alarms}")
    unsure = [f"{r.op}{'.' + r.variant if r.variant else ''}[{r.sample}]" for r in records if r.ours == "inconclusive"]
    print(f"inconclusive (too few entries resolved to judge, not a pass): {len(unsure)} {', '.join(unsure)}")
    ours_errors = sum(r.ours in ("error", "stopped") for r in records)
    torch_errors = sum(r.torch == "error" for r in records)
    print(f"\nagree on {agree} of {len(records)} samples; check_function errors or stops on {ours_errors}, "
          f"torch errors on {torch_errors}")  # fmt: skip
    both = [
        f"{r.op}{'.' + r.variant if r.variant else ''}[{r.sample}]" for r in records if r.agree and r.ours == "FAIL"
    ]
    print(f"both FAIL ({len(both)}): {', '.join(both)}")
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if not r.agree:
            groups[r.kind].append(r)
    rows = []
    for kind in KINDS:
        pool = groups.get(kind, [])
        errors = sum(r.ours in ("error", "stopped") for r in pool)
        ours_pass = sum(r.ours == "pass" and r.torch == "FAIL" for r in pool)
        ours_fail = sum(r.ours == "FAIL" and r.torch == "pass" for r in pool)
        rows.append([kind, len(pool), errors, ours_fail, ours_pass, len(pool) - errors - ours_fail - ours_pass])
    headers = ["kind", "not agreeing", "ours error/stop", "ours FAIL, torch pass", "ours pass, torch FAIL", "other"]
    print()
    print(format_table(headers, rows, title="disagreements and errors by kind"))
    for kind in KINDS:
        if not groups.get(kind):
            continue
        print(f"\n== {kind} ({len(groups[kind])})")
        for r in groups[kind]:
            name = r.op + (f".{r.variant}" if r.variant else "")
            text = r.ours_message or r.torch_message
            torch_text = f" | torch: {r.torch_message}" if r.torch_message and r.ours_message else ""
            print(f"  {name}[{r.sample}] ({r.shapes}): torch {r.torch}, ours {r.ours}: {text}{torch_text}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, help="only the first N ops with samples")
    parser.add_argument("--op", action="append", default=[], help="only this op (repeatable)")
    parser.add_argument("--with-empty", action="store_true", help="also samples with empty input tensors")
    parser.add_argument("--json", type=Path, help="write every sample's record here")
    parser.add_argument(
        "--dtype",
        choices=["float64", "float32"],
        default="float64",
        help="check_function's dtype (the samples' values rounded); torch's reference stays float64",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: threads only add synchronisation on a shared machine
    start = time.perf_counter()
    records, ops = sweep(args.ops, args.op, args.with_empty, args.dtype)
    report(records, ops, time.perf_counter() - start, args.dtype)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"agree": r.agree} for r in records], indent=1))


if __name__ == "__main__":
    main()
