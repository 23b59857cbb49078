"""preflight.jax.check_function beside jax.test_util.check_grads: planted bugs in hand-written rules, and a sweep of
JAX's own rules; the tables in docs/guides/jax.md.

Planted bugs (tests/jax_cases.py): every case in float32 (x64 off, JAX's default) and float64 (x64 on), over a few
seeds of the inputs; check_grads at order 1 in the modes the rule defines, with its default step (1e-4 x a random
unit direction) and tolerances. Sweep (tests/jax_sweep.py): 100 jax.numpy / jax.lax / jax.nn functions, float64 and
float32, both modes.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/jax_versus_check_grads.py`` (about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.jax_cases import CASES, check_grads_verdict
from tests.jax_sweep import SWEEP, check_grads_passes

from preflight._util.text import format_table
from preflight.jax import check_function

DTYPES = {"float32": (jnp.float32, False), "float64": (jnp.float64, True)}


def planted(seeds: int) -> None:
    rows = []
    for case in CASES:
        row: list[object] = [case.name]
        for kind, x64 in DTYPES.values():
            ours = theirs = localized = 0
            for seed in range(seeds):
                with jax.enable_x64(x64):
                    f, args = case.build(kind, seed)
                    report = check_function(f, *args, modes=case.modes, names=case.names)
                    cg = check_grads_verdict(f, args, case.modes, seed)
                failing = {n for n, r in report.parameters.items() if not r.passed}
                ours += report.passed if case.bug is None else not report.passed
                theirs += cg if case.bug is None else not cg
                localized += case.bug is not None and failing == {case.where}
            word = "passed" if case.bug is None else "caught"
            row += [f"{word} {ours}/{seeds}" + (f" (in {case.where}: {localized})" if case.bug else ""),
                    f"{word} {theirs}/{seeds}"]  # fmt: skip
        rows.append(row)
    headers = ["rule (custom_vjp unless said)", "preflight float32", "check_grads float32", "preflight float64",
               "check_grads float64"]  # fmt: skip
    print(format_table(headers, rows, title=f"Planted bugs and correct rules, {seeds} input seeds each"))


def sweep() -> None:
    rows, disagreements = [], []
    for dtype, (_, x64) in DTYPES.items():
        counts = {"both pass": 0, "both fail": 0, "only preflight fails": 0, "only check_grads fails": 0}
        for name, f, make in SWEEP:
            with jax.enable_x64(x64):
                args = make() if x64 else tuple(a.astype(jnp.float32) for a in make())
                ours = check_function(f, *args).passed
                theirs = check_grads_passes(f, args)
            key = ("both pass" if ours else "only preflight fails") if theirs else (
                "only check_grads fails" if ours else "both fail")  # fmt: skip
            counts[key] += 1
            if ours != theirs:
                disagreements.append(f"{dtype} {name}: preflight {'passes' if ours else 'fails'}, check_grads "
                                     f"{'passes' if theirs else 'fails'}")  # fmt: skip
        rows.append([dtype, len(SWEEP), *counts.values()])
    headers = ["dtype", "functions", "both pass", "both fail", "only preflight fails", "only check_grads fails"]
    print(format_table(headers, rows, title="JAX's own rules, jax.numpy / jax.lax / jax.nn (both modes)"))
    print("\n".join(["disagreements:", *disagreements]) if disagreements else "no disagreement")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"jax {jax.__version__}\n")
    planted(args.seeds)
    if not args.skip_sweep:
        print()
        sweep()


if __name__ == "__main__":
    main()
