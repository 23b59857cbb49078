"""preflight's gradient checkers against torch.autograd.gradcheck on a suite of realistic hand-written layers.

Every case of ``tests/layers`` (autograd Functions through ``preflight.torch.check_function``, nn.Modules through
``check_module``, NumPy losses through ``preflight.gradcheck``), in float64 and float32, several seeds, goes through
preflight's checker and through ``torch.autograd.gradcheck`` with its defaults (eps 1e-6, atol 1e-5, rtol 1e-3;
a NumPy case is wrapped in a torch Function whose backward returns the given gradient). In float32, preflight's
verdict (with its float64 copy, the default) stands beside its float32 check alone (``reference=False``; NumPy
losses make no copy, so both read the same). Beside each verdict: the
bug's relative size ``||J_bug - J_true|| / ||J_true||``, measured in float64 against autograd of the same forward.

Verdicts: ``pass``; ``FAIL``; ``FAIL (blames x)`` when a tensor named as failing holds no bug; ``FAIL (none named)``
when no tensor is named; ``pass (hollow)`` when fewer than half the coordinates were judged; ``error`` when the
checker raised. torch names only the first input with a mismatch.

The totals read issue #12's rules: no false alarm on correct cases (float64, float32), every bug of relative size
>= 1e-3 caught and localized in both dtypes, every bug >= 1e-6 caught in float64; smaller bugs are informational.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/verdict_suite.py`` (3 seeds, a few minutes on a loaded machine),
``--quick`` (seed 0 only), ``--dtype float32``, ``--case layernorm`` (substring of the case name, repeatable),
``--json out.json`` (every run, for a later comparison), ``--no-torch``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the registry lives in tests/layers

from tests.layers import CASES, Case
from tests.layers.harness import Verdict, run_ours, run_torch
from tests.layers.truth import Truth, measure

from preflight._util.text import format_table

#: Issue #12's thresholds on the bug's relative size: caught and localized in both dtypes above the first, caught in
#: float64 above the second.
BOTH_DTYPES, FLOAT64_ONLY = 1e-3, 1e-6


@dataclass
class Run:
    case: Case
    dtype: str
    seed: int
    truth: Truth
    ours: Verdict
    torch: Verdict | None
    #: preflight's float32 check without its float64 copy (``reference=False``); the same as ``ours`` in float64.
    alone: Verdict | None = None

    def rule(self) -> str:
        """Which rule applies: "correct", "nothing to judge", ">=1e-3", ">=1e-6 (float64)", or "informational"."""
        if self.case.expect == "pass":
            return "correct"
        if self.case.expect == "no-hollow-pass":
            return "nothing to judge"
        if self.truth.size >= BOTH_DTYPES:
            return ">=1e-3"
        if self.truth.size >= FLOAT64_ONLY and self.dtype == "float64":
            return ">=1e-6 (float64)"
        return "informational"


def ok(run: Run, verdict: Verdict) -> bool:
    """Whether ``verdict`` meets the rule the run falls under (informational runs: caught at all)."""
    rule = run.rule()
    if rule == "correct":
        return verdict.passed and not verdict.hollow
    if rule == "nothing to judge":
        return not verdict.hollow
    if rule == ">=1e-3":
        return verdict.caught() and verdict.localized(run.truth)
    return verdict.caught()


def run_all(cases: list[Case], dtypes: list[str], seeds: list[int], with_torch: bool) -> list[Run]:
    runs = []
    for case in cases:
        for seed in seeds:
            truth = measure(case, seed)
            for dtype in (d for d in dtypes if d in case.dtypes):
                ours = run_ours(case.build(dtype, seed))
                alone = run_ours(case.build(dtype, seed), reference=False) if dtype == "float32" else ours
                theirs = run_torch(case.build(dtype, seed)) if with_torch else None
                runs.append(Run(case, dtype, seed, truth, ours, theirs, alone))
    return runs


def size_text(sizes: list[float]) -> str:
    finite = [s for s in sizes if math.isfinite(s)]
    if not finite:
        return "-"
    low, high = min(finite), max(finite)
    if high < 1e-12:
        return "0"
    return f"{low:.1e}" if high <= 1.2 * low else f"{low:.1e}-{high:.1e}"


def verdicts_text(runs: list[Run], which: str) -> str:
    texts = [getattr(r, which).text(r.truth) for r in runs if getattr(r, which) is not None]
    if not texts:
        return "-"
    if len(set(texts)) == 1:
        return texts[0] if len(texts) == 1 else f"{texts[0]} x{len(texts)}"
    return ", ".join(texts)


def print_tables(runs: list[Run]) -> None:
    by_layer: dict[str, list[Run]] = defaultdict(list)
    for r in runs:
        by_layer[r.case.layer].append(r)
    for layer, group in by_layer.items():
        rows = []
        keys = list(dict.fromkeys((r.case.name, r.dtype) for r in group))
        for name, dtype in keys:
            mine = [r for r in group if r.case.name == name and r.dtype == dtype]
            first = mine[0]
            expect = {"pass": "correct", "fail": "bug", "no-hollow-pass": "nothing"}[first.case.expect]
            flag = "" if all(ok(r, r.ours) or r.rule() == "informational" for r in mine) else "  <-"
            rows.append(
                [
                    name,
                    dtype,
                    expect,
                    size_text([r.truth.size for r in mine]) if first.case.expect == "fail" else "-",
                    first.rule(),
                    verdicts_text(mine, "ours") + flag,
                    verdicts_text(mine, "alone") if dtype == "float32" else "",
                    verdicts_text(mine, "torch"),
                    f"{sum(r.ours.seconds for r in mine) / len(mine):.2f}",
                ]
            )
        headers = ["case", "dtype", "kind", "bug size", "rule", "preflight", "float32 alone", "torch gradcheck"]
        headers.append("s/run")
        print(format_table(headers, rows, title=f"{layer} ({first.case.kind})"))
        print()


def totals(runs: list[Run], with_torch: bool) -> list[list[Any]]:
    rows = []
    tools = ["ours", "alone", "torch"] if with_torch else ["ours", "alone"]

    def count(rule: str, dtype: str | None) -> list[Any]:
        pool = [r for r in runs if r.rule() == rule and (dtype is None or r.dtype == dtype)]
        out: list[Any] = [len(pool)]
        for tool in tools:
            out.append(sum(not ok(r, getattr(r, tool)) for r in pool))
        return out

    rows.append(["false alarms, correct cases", "float64", *count("correct", "float64")])
    rows.append(["false alarms, correct cases", "float32", *count("correct", "float32")])
    for dtype in ("float64", "float32"):
        pool = [r for r in runs if r.rule() == ">=1e-3" and r.dtype == dtype]
        row: list[Any] = ["bugs >= 1e-3 missed / caught but not localized", dtype, len(pool)]
        for tool in tools:
            missed = sum(not getattr(r, tool).caught() for r in pool)
            unlocalized = sum(getattr(r, tool).caught() and not getattr(r, tool).localized(r.truth) for r in pool)
            row.append(f"{missed} / {unlocalized}")
        rows.append(row)
    rows.append(["bugs 1e-6 to 1e-3 missed", "float64", *count(">=1e-6 (float64)", "float64")])
    small64 = [r for r in runs if r.rule() == "informational" and r.dtype == "float64"]
    small32 = [r for r in runs if r.rule() == "informational" and r.dtype == "float32"]
    for label, pool in [("bugs < 1e-6 missed (informational)", small64), ("bugs < 1e-3 missed (info.)", small32)]:
        dtype = "float64" if pool is small64 else "float32"
        rows.append([label, dtype, len(pool), *(sum(not getattr(r, t).caught() for r in pool) for t in tools)])
    rows.append(["hollow passes (nothing to judge)", "both", *count("nothing to judge", None)])
    return rows


def to_json(runs: list[Run]) -> list[dict[str, Any]]:
    def verdict(v: Verdict | None, truth: Truth) -> dict[str, Any] | None:
        if v is None:
            return None
        return {
            "verdict": v.text(truth),
            "passed": v.passed,
            "failing": sorted(v.failing),
            "judged": v.judged,
            "total": v.total,
            "seconds": v.seconds,
            "error": v.error,
        }

    return [
        {
            "case": r.case.name,
            "layer": r.case.layer,
            "kind": r.case.kind,
            "expect": r.case.expect,
            "bug": r.case.bug,
            "dtype": r.dtype,
            "seed": r.seed,
            "size": r.truth.size if math.isfinite(r.truth.size) else None,
            "affected": sorted(r.truth.affected),
            "rule": r.rule(),
            "ours_ok": ok(r, r.ours),
            "ours": verdict(r.ours, r.truth),
            "torch": verdict(r.torch, r.truth),
            "float32_alone": verdict(r.alone, r.truth) if r.dtype == "float32" else None,
        }
        for r in runs
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["float64", "float32", "both"], default="both")
    parser.add_argument("--case", action="append", default=[], help="substring of the case name (repeatable)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="seed 0 only")
    parser.add_argument("--no-torch", action="store_true", help="skip torch.autograd.gradcheck")
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: threads only add synchronisation on a shared machine
    cases = [c for c in CASES if not args.case or any(s in c.name for s in args.case)]
    if not cases:
        parser.error(f"--case: no case name contains {args.case}")
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    seeds = [0] if args.quick else list(range(args.seeds))
    runs = run_all(cases, dtypes, seeds, with_torch=not args.no_torch)
    print_tables(runs)
    headers = ["rule", "dtype", "runs", "preflight", "float32 alone"] + ([] if args.no_torch else ["torch gradcheck"])
    title = f"totals over {len(cases)} cases x seeds {seeds} (a run breaking its rule: '<-' above)"
    print(format_table(headers, totals(runs, not args.no_torch), title=title))
    if args.json:
        args.json.write_text(json.dumps(to_json(runs), indent=1))
        print(f"\n{len(runs)} runs written to {args.json}")


if __name__ == "__main__":
    main()
