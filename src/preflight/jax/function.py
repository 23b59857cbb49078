"""Gradient checks for JAX functions, custom_vjp and custom_jvp rules first: VJP and JVP per Jacobian entry.

Reverse mode (``jax.vjp``) and forward mode (``jax.jvp``) are compared with central differences of real evaluations,
entry by entry, by the same code as ``preflight.torch.check_function``: each output row's rounding noise and the
stairs its probe crossed (:mod:`preflight.check.function_noise`), steps inside the function's domain
(:mod:`preflight.check.function_steps`), the Jacobian verdict with rows on a grid and smaller steps where the
estimates do not settle (:mod:`preflight.check.function_judge`), the one report
(:mod:`preflight.check.function_report`). The same function gets the same verdict from either adapter, at the
edges too: an empty input or output passes with nothing to check, an input element that is not finite gets no step
and is named as skipped. Inputs and outputs are any pytrees; the perturbed evaluations of one input leaf run vmapped,
one jit each.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.validation import check_in_range, check_positive_int, describe
from preflight.check.diagnosis import TensorEvidence, diagnose
from preflight.check.function_judge import judge_block
from preflight.check.function_noise import row_grids
from preflight.check.function_report import block_evidence, conclusive, nothing_to_check, verdict_result
from preflight.check.function_steps import Verdict
from preflight.check.jacobian import Locator
from preflight.check.reference import before_reference, check_reference
from preflight.check.report import GradcheckReport, TensorResult
from preflight.check.verdict import relative_difference
from preflight.jax._outputs import Outputs, Stopped
from preflight.jax._pytree import Split, split
from preflight.jax._reference import has_float32, with_float64_copy

__all__ = ["check_function"]

A = NDArray[Any]
MODES = ("rev", "fwd")


def check_function(
    f: Callable[..., Any],
    *primals: Any,
    modes: Sequence[str] = MODES,
    eps: float | None = None,
    richardson: bool = True,
    max_outputs: int = 1024,
    names: Sequence[str] | None = None,
    seed: int = 0,
    worst: int = 5,
    order: int = 1,
    reference: bool = True,
) -> GradcheckReport:
    """Check the VJP and JVP of ``f`` against finite differences, per Jacobian entry.

    Parameters
    ----------
    f : callable
        ``f(*primals)`` returning an array or any pytree of arrays (a ``jax.custom_vjp`` or ``jax.custom_jvp``
        function, a jitted function, a layer's apply). Integer outputs are left out.
    *primals
        Arrays or pytrees; every floating leaf is checked (in the dtype JAX computes it in: float32 unless x64 is
        enabled), named by argument and path (``input0['w']``). Never modified. An element that is not finite
        (``-inf`` in a masked softmax, NaN) gets no step: its Jacobian entries are skipped, named in a note.
    modes : sequence of {"rev", "fwd"}
        Reverse mode (VJP, the report's ``parameters``) and forward mode (JVP, its ``forward_ad``). A mode the
        function does not define (JVP of a ``custom_vjp``) is skipped with a note, unless it is the only one asked.
    eps : float, optional
        Fixed step; default ``cbrt(eps) * max(1, |x_i|)`` per element, exactly representable. Where the outputs
        are not finite at a step, it is halved for that element (a note names them).
    richardson : bool
        Also evaluate at +-2h: the truncation error is measured instead of assumed.
    max_outputs : int
        Up to this many output elements the whole Jacobian is checked; beyond, 16 random output projections.
    names : sequence of str, optional
        Names for the arguments (default "input0", "input1", ...); leaves get their path appended.
    order : {1, 2}
        2 also checks the backward's own derivatives, once the first order passes
        (:mod:`preflight.jax.second_order`): the report's ``second_order`` section.
    reference : bool
        With a float32 leaf checked (JAX's default dtype), run the same check on float64 copies of the primals too,
        inside ``jax.enable_x64(True)`` (default), and fail an input that either check fails
        (:mod:`preflight.check.reference`): float32 differences resolve an error only to ~1e-4 of a Jacobian entry,
        the copies to 8 float32 ulps of the largest one. A function that does not run in float64 (an error, or
        float32 outputs from float64 primals) is checked in float32 alone, with a note saying why.

    Returns
    -------
    GradcheckReport
        The report every preflight check returns (its ``unit`` is Jacobian entries). The worst entries name the
        input element and the output element. It passes with a note "0 elements, nothing to check" when there is
        no Jacobian entry at all (an empty input or output), and does not pass (INCONCLUSIVE) when too few entries
        could be judged (all set aside as kinks, or not resolved at the step). The check stops (``stopped`` says
        why, ``passed`` is False) when ``f`` is random, or an output is not finite at the primals.

    Raises
    ------
    ValueError
        No floating input, float16/bfloat16 inputs, no floating output (integers only), bad options.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> @jax.custom_vjp
    ... def square(x):
    ...     return x**2
    >>> square.defvjp(lambda x: (x**2, x), lambda x, g: (3 * x * g,))  # the bug: 3x instead of 2x
    >>> report = check_function(square, jnp.array([0.5, 1.0, 2.0]))
    >>> report.passed, report.hints
    (False, ['input0: analytic = 1.50 x numeric'])
    >>> check_function(jnp.tanh, jnp.zeros((0, 3))).notes[0]
    '0 elements, nothing to check (an empty input or output)'
    >>> check_function(jax.nn.softmax, jnp.array([0.3, -jnp.inf, 1.2])).notes[0]
    'input0: 1 element(s) not finite (input0[1] = -inf): no step taken, their Jacobian entries are not checked'
    """
    check_positive_int(max_outputs, name="max_outputs")
    if not isinstance(order, int) or isinstance(order, bool) or order not in (1, 2):
        raise ValueError(f"order: expected 1 or 2, got {order!r}")
    check_reference(reference)
    if reference and has_float32(*primals):
        options: dict[str, Any] = {"modes": modes, "eps": eps, "richardson": richardson, "max_outputs": max_outputs,
                                   "names": names, "seed": seed, "worst": worst, "order": order}  # fmt: skip
        options["reference"] = False
        with before_reference():
            own = check_function(f, *primals, **options)
        return with_float64_copy(own, f, lambda *wide: check_function(f, *wide, **options), *primals)
    if order == 2:
        from preflight.jax.second_order import check_function_twice

        return check_function_twice(f, *primals, modes=modes, eps=eps, richardson=richardson,
                                    max_outputs=max_outputs, names=names, seed=seed, worst=worst)  # fmt: skip
    if eps is not None:
        eps = check_in_range(eps, name="eps", low=0.0, high=1.0, low_open=True)
    if not callable(f):
        raise ValueError(f"f: expected a callable f(*primals), got {describe(f)}")
    wanted = tuple(modes) if not isinstance(modes, str) else (modes,)
    if not wanted or any(m not in MODES for m in wanted):
        raise ValueError(f"modes: expected a non-empty sequence of 'rev' and 'fwd', got {modes!r}")
    labels = list(names) if names is not None else [f"input{i}" for i in range(len(primals))]
    if len(labels) != len(primals):
        raise ValueError(f"names: expected {len(primals)} names (one per argument), got {len(labels)}")
    if not primals:
        raise ValueError("primals: expected at least one argument to check")
    start = time.perf_counter()
    tree = split(tuple(primals), "", what="primals", finite=False)
    tree = _renamed(tree, labels)
    out = Outputs(tree.bind(lambda args: f(*args)), tree, max_outputs, seed)
    dtype = ", ".join(sorted({str(a.dtype) for a in tree.arrays}))
    method = "richardson" if richardson else "central"
    if out.entries == 0:
        leaves = zip(tree.names, tree.arrays, strict=True)
        inputs_seen = [(name, arr.shape, _locator(out, arr.shape)) for name, arr in leaves]
        empty = nothing_to_check(inputs_seen, worst, out.notes)
        return GradcheckReport(
            passed=True, difference=math.nan, parameters=empty if "rev" in wanted else {}, hints=[], dtype=dtype,
            method=method, noise=0.0, evaluations=out.evaluations, seconds=time.perf_counter() - start,
            notes=out.notes, forward_ad=dict(empty) if "fwd" in wanted else None, unit="Jacobian entries",
        )  # fmt: skip
    try:
        out.require_usable()
        out.measure_noise()
        blocks = [out.block(k, eps, richardson) for k in range(len(tree.arrays))]
        quantum, showing = row_grids(blocks, out.sigma)
    except Stopped as stop:
        return GradcheckReport(
            passed=False, difference=math.nan, parameters={}, hints=[str(stop)], dtype=dtype, method=method,
            noise=0.0, evaluations=out.evaluations, seconds=time.perf_counter() - start, notes=out.notes,
            stopped=str(stop), unit="Jacobian entries",
        )  # fmt: skip
    results: dict[str, dict[str, TensorResult]] = {}
    evidence: dict[str, list[TensorEvidence]] = {}
    pairs: dict[str, tuple[list[A], list[A]]] = {}
    verdicts: dict[str, list[Verdict]] = {}
    for mode in wanted:
        try:
            blocks_ad = out.vjp_rows() if mode == "rev" else out.jvp_rows()
        except Exception as exc:  # JAX raises TypeError for jvp of custom_vjp, others for unsupported rules
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            word = "reverse-mode AD (VJP)" if mode == "rev" else "forward-mode AD (JVP)"
            if len(wanted) == 1:
                raise ValueError(f"modes: {word} is not defined for this function ({reason})") from None
            out.notes.append(f"{word} not checked: not defined for this function ({reason})")
            continue
        judged = [judge_block(block, rows, quantum, showing) for block, rows in zip(blocks, blocks_ad, strict=True)]
        verdicts[mode] = [v for _, v in judged]
        results[mode], evidence[mode], pairs[mode] = _results(out, tree, judged, worst)
    main = "rev" if "rev" in results else "fwd"
    backward = results.get("rev", {})
    forward = results.get("fwd")
    finite = any(block.finite.any() for block in blocks)
    proven = conclusive(verdicts[main], out.notes, any_finite=finite)
    passed = proven and all(r.passed for block in results.values() for r in block.values())
    a_all, n_all = pairs[main]
    return GradcheckReport(
        passed=passed, difference=relative_difference(np.concatenate(a_all), np.concatenate(n_all)),
        parameters=backward, hints=diagnose(evidence[main]), dtype=dtype, method=method, noise=out.noise,
        evaluations=out.evaluations, seconds=time.perf_counter() - start, notes=out.notes, forward_ad=forward,
        unit="Jacobian entries",
    )  # fmt: skip


def _renamed(tree: Split, labels: list[str]) -> Split:
    """Leaf names ``[0]['w']`` (from the tuple of primals) as ``input0['w']``, or the caller's names."""
    named = []
    for name in tree.names:
        position, _, rest = name[1:].partition("]")
        named.append(labels[int(position)] + rest)
    return Split(tree.treedef, tree.leaves, tree.positions, tuple(named), tree.arrays)


def _results(
    out: Outputs, tree: Split, judged: list[tuple[A, Verdict]], worst: int
) -> tuple[dict[str, TensorResult], list[TensorEvidence], tuple[list[A], list[A]]]:
    """Each leaf's result, the hints' evidence and the entries judged (analytic, numeric), from its verdict."""
    results, evidence, a_all, n_all = {}, [], [], []
    for (name, arr), (a, v) in zip(zip(tree.names, tree.arrays, strict=True), judged, strict=True):
        results[name] = verdict_result(name, arr.shape, a, v, worst, _locator(out, arr.shape))
        evidence.append(block_evidence(name, arr.shape, arr.reshape(-1).astype(np.float64), out.v, a, v))
        # Kinks and skipped entries count in no figure of the verdict (abs at 0 would read as a 30 % difference).
        keep = ~v.kink & ~v.skip
        a_all.append(a[keep])
        n_all.append(v.numeric[keep])
    return results, evidence, (a_all, n_all)


def _locator(out: Outputs, shape: tuple[int, ...]) -> Locator:
    n = max(1, math.prod(shape))

    def where(flat: int) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        row, col = divmod(flat, n)
        index = tuple(int(v) for v in np.unravel_index(col, shape)) if shape else ()
        return index, out.output_index(row)

    return where
