"""preflight.jax.check_function beside preflight.torch.check_function on the same math (tests/parity_cases.py):
false alarms on correct functions (staircases, grid-rounding smooth functions, kinks and ties, correct hand-written
backwards), misses of buggy backwards (relative Jacobian error >= 1e-3), and draws where the two verdicts differ.

A false alarm is a FAILED verdict on a correct function (INCONCLUSIVE, nothing proven, is not one); a miss is a buggy
backward not FAILED. The entries set aside as kinks are counted too (a smooth function has none). Every case runs on
the same NumPy draws (seeds 0..draws-1) in both frameworks, float32 (JAX's default, x64 off) and float64 (x64 on).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/jax_torch_parity.py --draws 10`` (about 5 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.parity_cases import CASES, jax_report, relative_size, torch_report

from preflight._util.text import format_table

DTYPES = ("float32", "float64")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=10, help="draws of the inputs per case and dtype")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    args = parser.parse_args()
    rows = []
    totals = {key: 0 for key in ("jax wrong", "torch wrong", "differ", "runs")}
    for case in CASES:
        if args.only not in case.name:
            continue
        size = relative_size(case)
        row: list[object] = [case.name, case.family, "correct" if case.correct else f"{size:.1e}"]
        for dtype in DTYPES:
            jax_wrong = torch_wrong = differ = jax_kinks = torch_kinks = 0
            for seed in range(args.draws):
                mine, other = jax_report(case, dtype, seed), torch_report(case, dtype, seed)
                ours, theirs = mine.verdict, other.verdict
                jax_kinks += len(mine.kinks)
                torch_kinks += len(other.kinks)
                jax_wrong += (ours == "FAILED") != (not case.correct)
                torch_wrong += (theirs == "FAILED") != (not case.correct)
                differ += ours != theirs
            row += [f"{jax_wrong}/{args.draws}", f"{torch_wrong}/{args.draws}", differ, f"{jax_kinks}/{torch_kinks}"]
            totals["jax wrong"] += jax_wrong
            totals["torch wrong"] += torch_wrong
            totals["differ"] += differ
            totals["runs"] += args.draws
        rows.append(row)
        print(" | ".join(str(v) for v in row), flush=True)
    head = ["case", "family", "bug size"]
    for dtype in DTYPES:
        head += [f"jax {dtype} wrong", f"torch {dtype} wrong", f"{dtype} differ", f"{dtype} kinks jax/torch"]
    print()
    print("wrong: a false alarm (FAILED) on a correct function, or a buggy backward not FAILED; differ: draws whose")
    print("verdicts (PASSED, FAILED, INCONCLUSIVE) differ; kinks: Jacobian entries set aside as kinks, over the draws")
    print(format_table(head, rows))
    print(
        f"total: jax wrong {totals['jax wrong']}, torch wrong {totals['torch wrong']}, verdicts differ "
        f"{totals['differ']}, of {totals['runs']} runs each"
    )


if __name__ == "__main__":
    main()
