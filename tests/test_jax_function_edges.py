"""preflight.jax.check_function at the edges torch's check_function handles (issue 12): an empty input or output
passes with "0 elements, nothing to check"; an input element that is not finite (-inf in a masked softmax, a NaN
the function ignores) gets no step and is named as skipped; an output not finite at the inputs still stops the check.
Each case is written once against tests/parity_cases.py's :class:`Ops` and run in float32 and float64 (x64 on), and
the JAX verdict must equal torch's on the same values (where torch is installed)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from preflight.check.function_report import NOTHING_TO_CHECK  # noqa: E402
from preflight.jax import check_function  # noqa: E402

from .parity_cases import Case, Ops, jax_report, torch_report  # noqa: E402

pytestmark = pytest.mark.jax
HAS_TORCH = importlib.util.find_spec("torch") is not None
DTYPES = ("float32", "float64")


def _nan_to_num(o: Ops) -> Callable[[Any], Any]:
    """The framework's ``nan_to_num`` (not in :class:`Ops`): a NaN input element the function ignores."""
    if o.name == "torch":
        import torch

        return torch.nan_to_num
    return jnp.nan_to_num


def _softmax_backward(factor: float) -> Callable[[Ops, Sequence[Any], Any, Any], tuple[Any, ...]]:
    """softmax's backward ``y (g - <g, y>)`` of a 1-d input, times ``factor`` (1 is right)."""

    def backward(o: Ops, args: Sequence[Any], y: Any, g: Any) -> tuple[Any, ...]:
        return (factor * y * (g - (g * y).sum()),)

    return backward


def _masked(*shape: int, where: tuple[int, ...], value: float) -> Callable[[np.random.Generator], list[Any]]:
    """A normal draw of ``shape`` with the element ``where`` set to ``value`` (-inf: a masked logit; NaN)."""

    def draw(rng: np.random.Generator) -> list[Any]:
        x = rng.standard_normal(shape)
        x[where] = value
        return [x]

    return draw


def _custom_softmax(factor: float) -> Callable[[Ops], Any]:
    return lambda o: o.custom(lambda o, x: o.softmax(x), _softmax_backward(factor))


EMPTY = [
    Case("tanh of an empty input", "empty", lambda o: o.tanh, lambda rng: [np.zeros((0, 3))]),
    Case("an empty slice of the input", "empty", lambda o: lambda x: x[:0], lambda rng: [rng.standard_normal(3)]),
]
#: The -inf or NaN element, with how the notes name it (the input is ``input0``).
SKIPPED = [
    (Case("softmax with a -inf logit", "masked", lambda o: o.softmax, _masked(3, 6, where=(1, 2), value=-np.inf)),
     "input0[1, 2] = -inf"),
    (Case("custom softmax with a -inf logit", "masked", _custom_softmax(1.0), _masked(6, where=(4,), value=-np.inf)),
     "input0[4] = -inf"),
    (Case("2 tanh(nan_to_num(x)) of a NaN", "masked", lambda o: lambda x: 2 * o.tanh(_nan_to_num(o)(x)),
          _masked(3, 4, where=(2, 1), value=np.nan)),
     "input0[2, 1] = nan"),
]  # fmt: skip
#: A backward 1 % off (y (g - <g, y>) x 1.01: relative Jacobian error 1e-2) beside a -inf logit.
BUGGY = Case("custom softmax x1.01 with a -inf logit", "bug", _custom_softmax(1.01),
             _masked(6, where=(1,), value=-np.inf), correct=False)  # fmt: skip
#: A NaN the function passes on: the output is not finite at the inputs, the check stops (as torch's does).
PROPAGATED = Case("2 x of a NaN", "stops", lambda o: lambda x: 2 * x, _masked(3, where=(1,), value=np.nan))


def _same_verdict_as_torch(case: Case, dtype: str, seed: int = 0) -> Any:
    ours = jax_report(case, dtype, seed)
    if HAS_TORCH:
        theirs = torch_report(case, dtype, seed)
        assert ours.verdict == theirs.verdict, f"jax {ours}\ntorch {theirs}"
        assert ours.stopped == theirs.stopped
    return ours


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", EMPTY, ids=lambda c: c.name)
def test_an_empty_input_or_output_passes_with_nothing_to_check(case: Case, dtype: str) -> None:
    report = _same_verdict_as_torch(case, dtype)
    assert report.verdict == "PASSED" and NOTHING_TO_CHECK in report.notes, report.notes
    assert report.evaluations == 0 and report.stopped is None
    for results in (report.parameters, report.forward_ad):
        assert results is not None and [r.checked for r in results.values()] == [0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("case", "element"), [pytest.param(c, e, id=c.name) for c, e in SKIPPED])
def test_an_element_not_finite_gets_no_step_and_is_named_as_skipped(case: Case, element: str, dtype: str) -> None:
    report = _same_verdict_as_torch(case, dtype)
    assert report.verdict == "PASSED", str(report)
    skipped = [n for n in report.notes if "not finite" in n and "no step taken" in n]
    assert len(skipped) == 1 and element in skipped[0], report.notes
    result = report.parameters["input0"]
    # Every entry of the other elements is judged: the skipped element's column (one per output element) alone is not.
    outputs = result.size // int(np.prod(result.shape))
    assert result.checked == result.size - outputs > 0, result
    assert not any("moved by" in n for n in report.notes)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(3))
def test_a_buggy_backward_beside_a_masked_logit_still_fails(dtype: str, seed: int) -> None:
    report = _same_verdict_as_torch(BUGGY, dtype, seed)
    assert report.verdict == "FAILED", str(report)
    assert any("input0[1] = -inf" in n for n in report.notes), report.notes
    failing = report.parameters["input0"].failing()
    assert failing and all(c.index != (1,) for c in failing)


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_output_not_finite_at_the_inputs_still_stops_the_check(dtype: str) -> None:
    report = _same_verdict_as_torch(PROPAGATED, dtype)
    assert report.verdict == "FAILED" and "not finite at the given inputs" in (report.stopped or "")


def test_only_check_function_keeps_values_not_finite_parameters_are_refused() -> None:
    from preflight.jax import check_model

    params = {"w": jnp.array([1.0, -jnp.inf])}
    with pytest.raises(ValueError, match=r"params \(params\['w'\]\): expected finite values"):
        check_model(lambda p, x: jnp.sum(p["w"] * x), params, jnp.ones(2))
    with pytest.raises(ValueError, match="no floating-point output"):  # integers only: nothing to differentiate
        check_function(lambda x: jnp.round(x).astype(jnp.int32), jnp.zeros((0, 3)))
    with pytest.raises(ValueError, match="eps"):  # options are validated before an empty check passes
        check_function(jnp.tanh, jnp.zeros((0, 3)), eps=-1.0)
