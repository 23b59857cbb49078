"""Issue #12's rules on the suite of realistic hand-written layers (tests/layers), through preflight's checkers.

- no false alarm on a correct case, in float64 or float32 (and a pass must have judged most coordinates);
- every bug of relative size >= 1e-3 caught AND localized (every tensor named as failing holds the bug) in both
  dtypes;
- in float64, every bug of relative size >= 1e-6 caught;
- a check with nothing (or next to nothing) to judge does not read as a pass.

The bug's size is measured per seed in float64 (tests/layers/truth.py), never stated. What fails today is listed in
``XFAIL`` with the reason (strict: a fix shows up as an unexpected pass, to be removed from the list).
benchmarks/verdict_suite.py prints the same runs as tables, beside torch.autograd.gradcheck's verdicts.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from .layers import CASES, Case  # noqa: E402
from .layers.harness import Verdict, run_ours  # noqa: E402
from .layers.numpy_cases import mlp_data, mlp_grads, mlp_loss  # noqa: E402
from .layers.truth import Truth, measure  # noqa: E402

SEEDS = (0, 1, 2)
BOTH_DTYPES, FLOAT64_ONLY = 1e-3, 1e-6

#: (case, dtype) or (case, dtype, seed) -> why it fails today (measured on the code before the rewrite of the core).
XFAIL: dict[tuple[Any, ...], str] = {}


@functools.cache
def truth(name: str, seed: int) -> Truth:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure(by_name(name), seed)
    finally:
        torch.set_num_threads(threads)


def by_name(name: str) -> Case:
    return next(c for c in CASES if c.name == name)


def runs(keep: Any, dtypes: tuple[str, ...] = ("float64", "float32")) -> list[Any]:
    """pytest params (case name, dtype, seed) for which ``keep(case, dtype, seed)``, with their xfail marks."""
    out = []
    for case in CASES:
        for dtype in (d for d in dtypes if d in case.dtypes):
            for seed in SEEDS:
                if not keep(case, dtype, seed):
                    continue
                reason = XFAIL.get((case.name, dtype, seed)) or XFAIL.get((case.name, dtype))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                out.append(pytest.param(case.name, dtype, seed, id=f"{case.name}-{dtype}-{seed}", marks=marks))
    return out


def explain(verdict: Verdict, t: Truth | None = None) -> str:
    parts = [verdict.text(t)]
    if verdict.failing:
        parts.append(f"named failing: {sorted(verdict.failing)}")
    if t is not None and t.affected:
        parts.append(f"bug in: {sorted(t.affected)}, size {t.size:.2e}")
    if verdict.judged is not None:
        parts.append(f"judged {verdict.judged} of {verdict.total}")
    if verdict.error:
        parts.append(verdict.error)
    return "; ".join(parts)


def is_correct(case: Case, dtype: str, seed: int) -> bool:
    return case.expect == "pass"


def bug_at_least(threshold: float, below: float = np.inf) -> Any:
    def keep(case: Case, dtype: str, seed: int) -> bool:
        return case.expect == "fail" and threshold <= truth(case.name, seed).size < below

    return keep


# -- the registry is what it claims ------------------------------------------------------------------------------


def test_the_registry_covers_the_issues_layers_and_bug_sizes() -> None:
    layers = {c.layer for c in CASES if c.kind in ("function", "module")}
    with_both = {layer for layer in layers if {c.expect for c in CASES if c.layer == layer} >= {"pass", "fail"}}
    assert len(with_both) >= 12, sorted(with_both)
    assert {c.kind for c in CASES} == {"function", "module", "numpy"}
    sizes = [truth(c.name, 0).size for c in CASES if c.expect == "fail"]
    assert min(sizes) < 2e-7 and max(sizes) > 1.0
    for low in (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1):  # every decade from 1e-7 to 1 holds a bug
        assert any(low <= s < 10 * low for s in sizes), low
    assert any(c.tags and "kink" in c.tags and c.kind == "module" for c in CASES)


@pytest.mark.parametrize("name", [c.name for c in CASES if c.expect == "pass"])
def test_a_correct_case_matches_autograd_of_its_own_forward(name: str) -> None:
    t = truth(name, 0)
    assert t.size < 1e-12, t


@pytest.mark.parametrize("name", [c.name for c in CASES if c.expect == "fail"])
def test_a_buggy_case_has_a_bug_on_every_seed(name: str) -> None:
    for seed in SEEDS:
        t = truth(name, seed)
        assert t.size > 1e-8 and t.affected, (seed, t)


def test_the_numpy_mlp_backward_is_torch_autograd_of_its_loss() -> None:
    params, X, Y = mlp_data("float64", 0)
    leaves = {k: torch.from_numpy(v).requires_grad_(True) for k, v in params.items()}
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    a1 = torch.tanh(leaves["W1"] @ x + leaves["b1"])
    log_p = torch.log_softmax(leaves["W2"] @ a1 + leaves["b2"], dim=0)
    lam = 1e-3
    loss = -(y * log_p).sum() / x.shape[1] + lam / 2 * ((leaves["W1"] ** 2).sum() + (leaves["W2"] ** 2).sum())
    assert float(loss.detach()) == pytest.approx(mlp_loss(params, X, Y, lam), rel=1e-13)
    loss.backward()
    ours = mlp_grads(params, X, Y, lam)
    for k, leaf in leaves.items():
        np.testing.assert_allclose(ours[k], leaf.grad.numpy(), rtol=1e-10, atol=1e-14)


# -- issue #12's rules ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("name", "dtype", "seed"), runs(is_correct))
def test_no_false_alarm_on_a_correct_case(name: str, dtype: str, seed: int) -> None:
    verdict = run_ours(by_name(name).build(dtype, seed))
    assert verdict.passed and not verdict.hollow, explain(verdict)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "dtype", "seed"), runs(bug_at_least(BOTH_DTYPES)))
def test_a_bug_of_1e3_is_caught_and_localized_in_both_dtypes(name: str, dtype: str, seed: int) -> None:
    t = truth(name, seed)
    verdict = run_ours(by_name(name).build(dtype, seed))
    assert verdict.caught() and verdict.localized(t), explain(verdict, t)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "dtype", "seed"), runs(bug_at_least(FLOAT64_ONLY, BOTH_DTYPES), ("float64",)))
def test_a_float64_bug_of_1e6_is_caught(name: str, dtype: str, seed: int) -> None:
    t = truth(name, seed)
    verdict = run_ours(by_name(name).build(dtype, seed))
    assert verdict.caught(), explain(verdict, t)


@pytest.mark.parametrize(("name", "dtype", "seed"), runs(lambda c, d, s: c.expect == "no-hollow-pass"))
def test_a_check_with_nothing_to_judge_does_not_read_as_a_pass(name: str, dtype: str, seed: int) -> None:
    verdict = run_ours(by_name(name).build(dtype, seed))
    assert not verdict.hollow, explain(verdict)


# -- the float32 ReLU MLP at batch 256 over more seeds -------------------------------------------------------------

#: Seeds beyond SEEDS for the one wrong element among dense kinks.
MORE_SEEDS = range(3, 10)
#: Seeds at which float32 differences alone (``reference=False``) cannot resolve the wrong element (measured
#: 2026-11-28): it sits among correct coordinates bent as far by kinks. The float64 copy catches every seed.
BELOW_RESOLUTION = {
    1: "size 1.1e-3: 6.9 sigma / h off, inside the first tolerance, where correct coordinates bent by many small "
    "kinks sit 5-8 sigma / h off on lines that look just as smooth; even the kink model on 241 values over [-2h, 2h] "
    "puts it 2.1 tolerances off against up to 1.8 for correct coordinates",
    3: "size 1.2e-3: 3.5 sigma / h, inside float32's noise at this step",
    4: "size 3.2e-3: 11 sigma / h, within Richardson's allowance of 15 sigma / h among dense kinks",
}


@pytest.mark.slow
@pytest.mark.parametrize("seed", MORE_SEEDS)
def test_a_correct_float32_relu_mlp_passes_at_more_seeds(seed: int) -> None:
    verdict = run_ours(by_name("mlp-relu-b256").build("float32", seed))
    assert verdict.passed and not verdict.hollow, explain(verdict)


@pytest.mark.slow
@pytest.mark.parametrize("seed", MORE_SEEDS)
def test_one_wrong_element_among_dense_float32_kinks_is_caught_at_more_seeds(seed: int) -> None:
    name = "mlp-relu-b256/last-element-skipped"
    t = truth(name, seed)
    if t.size < BOTH_DTYPES:
        pytest.skip(f"seed {seed}: the bug is {t.size:.1e}, below issue #12's float32 bar")
    verdict = run_ours(by_name(name).build("float32", seed))
    assert verdict.caught() and verdict.localized(t), explain(verdict, t)


@pytest.mark.slow
@pytest.mark.parametrize(
    "seed",
    [
        pytest.param(
            s, marks=[pytest.mark.xfail(strict=True, reason=BELOW_RESOLUTION[s])] if s in BELOW_RESOLUTION else []
        )
        for s in range(10)
    ],
)
def test_float32_differences_alone_resolve_the_wrong_element_except_where_kinks_bend_as_far(seed: int) -> None:
    name = "mlp-relu-b256/last-element-skipped"
    t = truth(name, seed)
    if t.size < BOTH_DTYPES:
        pytest.skip(f"seed {seed}: the bug is {t.size:.1e}, below issue #12's float32 bar")
    verdict = run_ours(by_name(name).build("float32", seed), reference=False)
    assert verdict.caught() and verdict.localized(t), explain(verdict, t)


@pytest.mark.slow
@pytest.mark.parametrize("seed", MORE_SEEDS)
def test_float32_differences_alone_raise_no_false_alarm_on_the_relu_mlp(seed: int) -> None:
    verdict = run_ours(by_name("mlp-relu-b256").build("float32", seed), reference=False)
    assert verdict.passed and not verdict.hollow, explain(verdict)
