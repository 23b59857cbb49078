"""preflight.jax.check_model against the naive way, side by side in one run, and the directional screen at 1e6.

A Flax MLP [256, 256, 128, 10] (99,978 parameters), tanh, softmax cross-entropy over a batch of 64, float32 (JAX's
default), every coordinate checked two-sided, in float32 alone (``reference=False``: the default adds the same check
on a float64 copy, a second check of the same kind, which the float32 loop below has no counterpart for). Beside it:
the naive loop, one jitted loss call per perturbed coordinate (each perturbed copy made with ``leaf.at[i].set``),
timed on a stratified sample of coordinates and extrapolated to the 2P evaluations of a full check; and 2P x one
jitted loss evaluation (the floor of any black box). Then ``screen=3`` on a ~1e6-parameter MLP: a handful of loss
evaluations whatever the size, three times from cold caches (trace and compile included each time), the best of them
printed.

Run: ``.venv/bin/python benchmarks/bench_jax_check.py`` (about 2 minutes) or ``--quick`` (a 12k-parameter MLP).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen

from preflight._util.text import format_table
from preflight.jax import check_model

FULL = [256, 256, 128, 10]  # 99,978 parameters, as in shared/ANCHORS.md
QUICK = [64, 100, 50, 10]  # 12,060 parameters
SCREEN = [512, 1024, 512, 10]  # 1,055,242 parameters
#: Coordinates the naive loop is timed on (spread over every leaf in proportion to its size, at least 8 each).
LOOP_SAMPLE = 2000


class MLP(linen.Module):
    sizes: tuple[int, ...]

    @linen.compact
    def __call__(self, x: Any) -> Any:
        for width in self.sizes[1:-1]:
            x = jnp.tanh(linen.Dense(width)(x))
        return linen.Dense(self.sizes[-1])(x)


def problem(sizes: list[int], m: int = 64) -> tuple[Any, Any, Any, Any]:
    model = MLP(tuple(sizes))
    x = jax.random.normal(jax.random.key(1), (m, sizes[0]))
    y = jax.random.randint(jax.random.key(2), (m,), 0, sizes[-1])
    variables = model.init(jax.random.key(0), x)

    def loss(v: Any, x: Any, y: Any) -> Any:
        logits = model.apply(v, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    return loss, variables, x, y


def one_loss_seconds(jitted: Any, variables: Any, x: Any, y: Any, repeats: int = 200) -> float:
    float(jitted(variables, x, y))
    start = time.perf_counter()
    for _ in range(repeats):
        float(jitted(variables, x, y))
    return (time.perf_counter() - start) / repeats


def naive_loop_seconds(jitted: Any, variables: Any, x: Any, y: Any, total: int) -> tuple[float, int]:
    """Seconds per perturbed loss of the naive loop, on a sample of coordinates of every leaf."""
    leaves, tree = jax.tree_util.tree_flatten(variables)
    h = float(np.cbrt(np.finfo(np.float32).eps))
    rng = np.random.default_rng(0)
    plan = [(k, rng.choice(a.size, size=min(a.size, max(8, LOOP_SAMPLE * a.size // total)), replace=False))
            for k, a in enumerate(leaves)]  # fmt: skip
    float(jitted(variables, x, y))
    count, start = 0, time.perf_counter()
    for k, coords in plan:
        flat = leaves[k].reshape(-1)
        for i in coords.tolist():
            for sign in (1.0, -1.0):
                moved = list(leaves)
                moved[k] = flat.at[i].add(sign * h).reshape(leaves[k].shape)
                float(jitted(jax.tree_util.tree_unflatten(tree, moved), x, y))
                count += 1
    return (time.perf_counter() - start) / count, count


def side_by_side(sizes: list[int]) -> None:
    loss, variables, x, y = problem(sizes)
    count = sum(a.size for a in jax.tree_util.tree_leaves(variables))
    jitted = jax.jit(loss)
    start = time.perf_counter()
    report = check_model(loss, variables, x, y, progress=False, reference=False)  # float32 against float32 calls
    ours = time.perf_counter() - start
    one = one_loss_seconds(jitted, variables, x, y)
    per_loop, sampled = naive_loop_seconds(jitted, variables, x, y, count)
    loop, floor = 2 * count * per_loop, 2 * count * one
    rows = [
        ["preflight.jax.check_model", count, report.evaluations, ours, report.verdict.lower()],
        [f"naive loop of jitted calls ({sampled:,} timed, x 2P)", count, 2 * count, loop, "-"],
        ["2P x one jitted loss evaluation", count, 2 * count, floor, "-"],
    ]
    title = (f"Full check, float32 Flax MLP {sizes}, batch 64, every coordinate "
             f"(one jitted loss evaluation: {one * 1e6:.0f} us)")  # fmt: skip
    print(format_table(["checker", "parameters", "loss evaluations", "seconds", "verdict"], rows, title=title))
    print(f"\nspeed-up: {loop / ours:.1f}x the naive loop, {floor / ours:.2f}x 2P jitted loss evaluations   "
          f"({report.notes[0]})\n")  # fmt: skip


def screen(sizes: list[int], repeats: int) -> None:
    """The screen ``repeats`` times, each from cold caches (``jax.clear_caches``: trace and XLA compile included)."""
    loss, variables, x, y = problem(sizes)
    count = sum(a.size for a in jax.tree_util.tree_leaves(variables))
    rows, times = [], []
    for run in range(1, repeats + 1):
        jax.clear_caches()
        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), time.process_time()
        report = check_model(loss, variables, x, y, screen=3, progress=False, reference=False)
        times.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu
        rows.append([run, count, report.evaluations, times[-1], cpu, f"{load:.1f}", report.verdict.lower()])
    # CPU seconds: all threads of this process (XLA's included), what the screen costs whatever else runs.
    headers = ["run", "parameters", "loss evaluations", "seconds (compiles included)", "CPU seconds", "load (1 min)",
               "verdict"]  # fmt: skip
    title = f"Directional screen (3 random directions), float32 Flax MLP {sizes}, batch 64"
    print(format_table(headers, rows, title=title))
    print(f"\nbest of {repeats}: {min(times):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 12k-parameter MLP instead of 1e5")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the screen (best of them printed)")
    parser.add_argument("--screen-only", action="store_true", help="only the directional screen")
    args = parser.parse_args()
    load = tuple(round(v, 1) for v in os.getloadavg())
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}; load average {load} (other jobs on the machine)\n")
    if not args.screen_only:
        side_by_side(QUICK if args.quick else FULL)
    screen(SCREEN, args.repeats)


if __name__ == "__main__":
    main()
