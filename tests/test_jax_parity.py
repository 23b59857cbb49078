"""preflight.jax.check_function and preflight.torch.check_function run the same code (preflight.check.function_*):
on the same math and the same draws they give the same verdict (where torch is installed), and always pass a correct
function (staircases, smooth functions rounding on a float32 grid, kinks and ties) and fail a buggy backward of
relative size >= 1e-3. The registry is tests/parity_cases.py (function x dtype x draw);
benchmarks/jax_torch_parity.py runs it over 10 draws."""

from __future__ import annotations

import importlib.util

import pytest

jax = pytest.importorskip("jax")

from .parity_cases import CASES, Case, jax_report, relative_size, torch_report  # noqa: E402

pytestmark = pytest.mark.jax
HAS_TORCH = importlib.util.find_spec("torch") is not None
DTYPES = ("float32", "float64")
DRAWS = range(3)
#: Cases whose checks take more than a few seconds on 2 loaded cores (both frameworks, one draw: 2-6 s; the others
#: 0.3-2 s).
SLOW = {"mlp", "mlp, log_softmax head"}
#: The correct function whose float32 differences alone fail at most draws: at |x| beyond ~4 each stair of
#: round(x, 3) is a jump of ~15 sigma or less, which the values cannot tell from rounding, and the entries settle on
#: the stairs' mean slope. The float64 copy overrules those failures (the float32 backward gives its derivatives).
STAIRS_TIMES_SMOOTH = "tanh(round(x, 3)) * x"


def _params() -> list[object]:
    out = []
    for case in CASES:
        for dtype in DTYPES:
            for seed in DRAWS:
                marks = [pytest.mark.slow] if case.name in SLOW else []
                out.append(pytest.param(case, dtype, seed, marks=marks, id=f"{case.name}-{dtype}-{seed}"))
    return out


@pytest.mark.parametrize(("case", "dtype", "seed"), _params())
def test_a_correct_function_passes_a_buggy_backward_fails_and_torch_agrees(case: Case, dtype: str, seed: int) -> None:
    ours = jax_report(case, dtype, seed)
    if HAS_TORCH:
        theirs = torch_report(case, dtype, seed)
        assert ours.verdict == theirs.verdict, f"jax {ours}\ntorch {theirs}"
    if case.correct:
        assert ours.verdict != "FAILED", str(ours)
    else:
        assert ours.verdict == "FAILED", str(ours)


@pytest.mark.parametrize("seed", range(10))
def test_the_staircase_times_smooth_passes_in_float32_with_its_float64_copy(seed: int) -> None:
    case = next(c for c in CASES if c.name == STAIRS_TIMES_SMOOTH)
    report = jax_report(case, "float32", seed)
    assert report.verdict != "FAILED", str(report)


@pytest.mark.skipif(not HAS_TORCH, reason="the relative size is measured with torch's autograd")
def test_every_planted_bug_is_at_least_1e_3_in_relative_size() -> None:
    sizes = {case.name: relative_size(case) for case in CASES if not case.correct}
    assert len(sizes) >= 3 and all(size >= 1e-3 for size in sizes.values()), sizes
