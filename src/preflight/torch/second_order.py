"""Second-order checks for PyTorch: the derivatives of a function's backward, and a model's Hessian-vector products.

``check_function(fn, *inputs, order=2)`` first runs the first-order check (a first-order failure is reported as
such). Then the backward itself becomes the function checked: ``(inputs, grad_output) -> vjp(fn, inputs)(grad_output)``
(``torch.autograd.grad`` with ``create_graph=True``), whose Jacobian autograd gives by double backward and
:func:`preflight.torch.check_function` compares, entry by entry, with central differences of the backward: with
respect to every checked input and to the incoming gradient ``grad_output`` (drawn at random, seeded), the same
thing ``torch.autograd.gradgradcheck`` checks, with the calibrated verdict (float32 too) and every entry located.

``check_module(model, loss_fn, batch, order=2)`` hands the engine autograd's gradient of the loss and its
Hessian-vector product (double backward): :mod:`preflight.check.second_order` does the rest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from preflight.check.diagnosis import TensorEvidence, diagnose
from preflight.check.report import Coordinate, GradcheckReport, TensorResult
from preflight.check.second_order import SecondOrder, attach
from preflight.torch._backward_noise import BackwardCheck
from preflight.torch.function import check_function, run_function_check

if TYPE_CHECKING:
    from preflight.torch.check import _ModuleCheck

__all__ = ["check_function_twice", "module_derivatives"]

A = NDArray[Any]
#: Above this many Jacobian entries of the backward, the hints read check_function's own projected evidence instead
#: of rebuilding each (input, gradient) block from every entry.
BLOCK_HINT_ENTRIES = 250_000


def check_function_twice(
    fn: Callable[..., Any], *inputs: Any, eps: float | None = None, forward_ad: bool | None = None,
    richardson: bool = True, max_outputs: int = 1024, names: Sequence[str] | None = None, seed: int = 0,
    worst: int = 5,
) -> GradcheckReport:  # fmt: skip
    """``check_function(fn, *inputs, order=2)``: the first-order check, then the Jacobian of the backward (module
    docstring) in the report's ``second_order`` section, one row per checked input and per ``grad_output``."""
    options: dict[str, Any] = {"eps": eps, "richardson": richardson, "max_outputs": max_outputs, "seed": seed}
    first = check_function(fn, *inputs, forward_ad=forward_ad, names=names, worst=worst, reference=False, **options)
    return attach(first, lambda: _backward_check(fn, inputs, names, worst, options))


def _checked(inputs: tuple[Any, ...]) -> list[int]:
    """The positions check_function checks: tensors that require grad, else every floating tensor."""
    positions = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad]
    return positions or [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.is_floating_point()]


class _Dense(torch.autograd.Function):
    """The identity, whose backward turns torch's efficient zero tensors (a ZeroTensor: what some double backwards
    return, l1_loss's for one) into ordinary zeros, which the Jacobian's conversion to NumPy can read."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        return torch.zeros(g.shape, dtype=g.dtype, device=g.device) if g._is_zerotensor() else g


class _Backward:
    """The backward of ``fn`` as a function of its checked inputs and of ``grad_output``, for check_function."""

    def __init__(self, fn: Callable[..., Any], inputs: tuple[Any, ...], positions: list[int], seed: int) -> None:
        self.fn, self.positions, self.count = fn, positions, len(inputs)
        leaves = [x.detach().clone().requires_grad_(True) if i in positions else x for i, x in enumerate(inputs)]
        with torch.enable_grad():
            outs = self.differentiable(fn(*leaves))
        generator = torch.Generator().manual_seed(seed + 31)
        self.grad_outputs = [torch.randn(o.shape, generator=generator, dtype=torch.float64).to(o.dtype) for o in outs]
        #: (output k of the backward, checked input i) pairs autograd cannot differentiate (no path in its graph).
        self.unconnected: list[tuple[int, int]] = []
        self.once_differentiable = False

    @staticmethod
    def differentiable(result: Any) -> list[torch.Tensor]:
        items = result if isinstance(result, (tuple, list)) else [result]
        return [t for t in items if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad]

    def __call__(self, *args: Any) -> tuple[torch.Tensor, ...]:
        xs, vs = args[: self.count], args[self.count :]
        graph = torch.is_grad_enabled()  # check_function evaluates under no_grad, differentiates with grad enabled
        with torch.enable_grad():
            leaves = [
                x if i not in self.positions or x.requires_grad else x.detach().requires_grad_(True)
                for i, x in enumerate(xs)
            ]
            wanted = [leaves[i] for i in self.positions]
            densify: Any = _Dense.apply  # untyped in torch's stubs
            dense = [densify(x) if i in self.positions else x for i, x in enumerate(leaves)]
            outs = self.differentiable(self.fn(*dense))
            grads = torch.autograd.grad(outs, wanted, list(vs), create_graph=graph, allow_unused=True)
        result = []
        for g, w in zip(grads, wanted, strict=True):
            g = torch.zeros_like(w) if g is None else g
            if graph and not g.requires_grad:
                # Not differentiable at all (computed outside autograd): autograd's own answer is a zero derivative;
                # a zero link keeps the output checked (check_function skips outputs that do not require grad).
                g = g + 0 * sum(v.sum() for v in vs)
            result.append(g if graph else g.detach())
        return tuple(result)

    def trace_graph(self, args: list[Any]) -> None:
        """Which (backward output, checked argument by its rank among them) pairs have no path in autograd's graph,
        and whether @once_differentiable cut it (its outputs hang on an error node)."""
        leaves = [a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.requires_grad else a
                  for a in args]  # fmt: skip
        checked = [k for k, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]
        with torch.enable_grad():
            outs = self(*leaves)
            for k, out in enumerate(outs):
                self.once_differentiable |= out.grad_fn is not None and type(out.grad_fn).__name__ == "Error"
                if not out.requires_grad:
                    self.unconnected += [(k, rank) for rank in range(len(checked))]
                    continue
                found = torch.autograd.grad(out, [leaves[i] for i in checked], torch.ones_like(out),
                                            retain_graph=True, allow_unused=True)  # fmt: skip
                self.unconnected += [(k, rank) for rank, g in enumerate(found) if g is None]


def _backward_check(
    fn: Callable[..., Any], inputs: tuple[Any, ...], names: Sequence[str] | None, worst: int, options: dict[str, Any]
) -> SecondOrder:
    positions = _checked(inputs)
    labels = list(names) if names is not None else [f"input{i}" for i in positions]
    backward = _Backward(fn, inputs, positions, int(options["seed"]))
    vs = [v.requires_grad_(True) for v in backward.grad_outputs]
    args = [x.detach().requires_grad_(True) if i in positions else (x.detach() if isinstance(x, torch.Tensor) else x)
            for i, x in enumerate(inputs)] + vs  # fmt: skip
    v_labels = ["grad_output"] if len(vs) == 1 else [f"grad_output{k}" for k in range(len(vs))]
    everything = [*labels, *v_labels]
    backward.trace_graph(args)
    entries = sum(a.numel() for a in args if isinstance(a, torch.Tensor) and a.requires_grad) * sum(
        inputs[i].numel() for i in positions
    )
    # Every entry comes back (as "worst") when the hints can afford to rebuild each block from them.
    shown = max(worst, entries) if entries <= BLOCK_HINT_ENTRIES else worst
    try:
        inner = run_function_check(BackwardCheck, backward, tuple(args), options["eps"], False, options["richardson"],
                                   options["max_outputs"], everything, options["seed"], shown)  # fmt: skip
    except (RuntimeError, NotImplementedError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return SecondOrder({}, [], [], 0, False, f"autograd cannot differentiate the backward of fn ({reason})")
    notes = [
        "second order: the Jacobian of the backward (inputs, grad_output) -> vjp(fn, inputs)(grad_output), by "
        f"double backward, against central differences of the backward (grad_output drawn at random, seed "
        f"{options['seed']}); an entry 'x[i] -> grad W[j]' is d(grad W)[j] / dx[i]; {inner.evaluations:,} backward "
        "evaluations",
        *(f"second order: {n}" for n in inner.notes),
    ]
    if inner.stopped:
        return SecondOrder({}, [], notes, inner.evaluations, False, inner.stopped)
    results, hints = _per_block(inner, labels, everything, args, backward, worst)
    passed = inner.passed and all(r.passed for r in results.values())
    return SecondOrder(results, hints, notes, inner.evaluations, passed)


def _per_block(
    inner: GradcheckReport, labels: list[str], everything: list[str], args: list[Any], backward: _Backward,
    worst: int,
) -> tuple[dict[str, TensorResult], list[str]]:  # fmt: skip
    """Results per input with each entry naming its gradient element (``x[1] -> grad W[0, 2]``), and hints read per
    block ``d(grad W)/dx`` (a factor, a sign, a missing term), where every entry came back."""
    # Every judged entry came back: ``worst`` holds all but the entries set aside (kinks, skipped elements), so a
    # single kink must not turn the block hints off (it did: the float32 curvature x 1.1 bug at seed 14 then got
    # only the per-input hint "x: analytic = 1.10 x numeric", not the block's "d(grad x)/dx: ...").
    located = all(
        len(r.worst) >= r.checked and all(c.output is not None for c in r.worst) for r in inner.parameters.values()
    )
    checked = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    results, evidence = {}, []
    rng = np.random.default_rng(0)
    not_finite: list[str] = []
    for name, arg in zip(everything, checked, strict=True):
        r = inner.parameters[name]
        named = [_named(c, labels) for c in r.worst]
        results[name] = dataclasses.replace(r, worst=named[:worst], kinks=[_named(c, labels) for c in r.kinks])
        bad = [c for c in named if not (math.isfinite(c.analytic) and math.isfinite(c.numeric))]
        if bad or math.isnan(r.difference):
            # A NaN compares false with every tolerance: without this, a NaN double backward would read as a pass.
            results[name] = dataclasses.replace(
                results[name], passed=False, significance=math.inf,
                # the first-order verdict already fails a NaN analytic entry whose numeric value is a number
                failed=r.failed + sum(not (math.isnan(c.analytic) and not math.isnan(c.numeric)) for c in bad),
                worst=(bad + [c for c in named if c not in bad])[:worst],
            )  # fmt: skip
            where = f" (e.g. {bad[0].where(name)}: analytic {bad[0].analytic}, numeric {bad[0].numeric})" if bad else ""
            not_finite.append(f"{name}: the double backward or the backward's differences are not finite at "
                              f"{len(bad) or 'some'} entries{where}")  # fmt: skip
        if located:
            kinks = {(c.index, c.output) for c in r.kinks}
            entries = [c for c in r.worst if (c.index, c.output) not in kinks]
            evidence += _block_evidence(name, arg, entries, labels, rng)
    hints, explained = _graph_hints(backward, labels, everything, results)
    evidence = [e for e in evidence if e.name not in explained and np.all(np.isfinite(e.analytic))]
    return results, not_finite + hints + (diagnose(evidence) if located else inner.hints)


def _named(c: Coordinate, labels: list[str]) -> Coordinate:
    if c.output is None:
        return c
    k, *index = c.output
    return dataclasses.replace(c, output=tuple(index), output_name=f"grad {labels[k]}")


def _block_evidence(
    name: str, arg: torch.Tensor, entries: list[Coordinate], labels: list[str], rng: np.random.Generator
) -> list[TensorEvidence]:
    """One piece of evidence per (gradient k, this input): the block's rows combined with random weights."""
    shape = tuple(arg.shape)
    size = max(1, int(np.prod(shape)))
    theta = arg.detach().double().reshape(-1).numpy()
    out = []
    for k, label in enumerate(labels):
        mine = [c for c in entries if c.output is not None and c.output[0] == k]
        if not mine:
            continue
        rows = sorted({c.output[1:] for c in mine if c.output is not None})
        where = {row: j for j, row in enumerate(rows)}
        a, n, t = (np.zeros((len(rows), size)) for _ in range(3))
        for c in mine:
            assert c.output is not None
            j, col = where[c.output[1:]], int(np.ravel_multi_index(c.index, shape)) if shape else 0
            a[j, col], n[j, col], t[j, col] = c.analytic, c.numeric, c.tolerance
        w = rng.standard_normal(len(rows))
        pa, pn, pt = w @ a, w @ n, np.abs(w) @ t
        # Failing as the hints see it: an entry beyond its tolerance, and the combination too.
        failed = bool(np.any(np.abs(a - n) > t) and np.any(np.abs(pa - pn) > pt))
        out.append(TensorEvidence(f"d(grad {label})/d{name}", shape, np.arange(size), pa, pn, theta, pt, failed))
    return out


def _graph_hints(
    backward: _Backward, labels: list[str], everything: list[str], results: dict[str, TensorResult]
) -> tuple[list[str], set[str]]:
    """Failing blocks autograd's graph cannot reach (the backward was computed outside autograd), and the names of
    the blocks those hints explain."""
    hints, explained = [], set()
    for k, i in backward.unconnected:
        failing = [c for c in results[everything[i]].failing() if c.output_name == f"grad {labels[k]}"]
        if not results[everything[i]].passed and failing:
            how = (
                "fn's backward is marked @once_differentiable"
                if backward.once_differentiable
                else "fn's backward computes it outside autograd (.detach(), .numpy(), torch.no_grad(), .data)"
            )
            hints.append(
                f"grad {labels[k]} changes when {everything[i]} moves, but autograd's graph has no path from "
                f"{everything[i]} to it: {how}, so its derivative reads 0: the backward is not differentiable"
            )
            explained.add(f"d(grad {labels[k]})/d{everything[i]}")
    return hints, explained


def module_derivatives(job: _ModuleCheck) -> tuple[Callable[[Any], dict[str, A]], Callable[[Any, Any], dict[str, A]]]:
    """``grads(params)`` and ``hvp(params, v)`` of a module's loss by autograd, at the parameters' current values
    (the engine moves the NumPy arrays that share memory with them)."""

    def leaves() -> dict[str, torch.Tensor]:
        return {n: p.clone().requires_grad_(n in job.checked) for n, p in job.tensors.items()}

    def gradient(_params: Any) -> dict[str, A]:
        values = leaves()
        with torch.enable_grad():
            grads = torch.autograd.grad(job.call(values), [values[n] for n in job.checked], allow_unused=True)
        return {n: _numpy(g, values[n]) for n, g in zip(job.checked, grads, strict=True)}

    def hvp(_params: Any, v: Any) -> dict[str, A]:
        values = leaves()
        wanted = [values[n] for n in job.checked]
        with torch.enable_grad():
            grads = torch.autograd.grad(job.call(values), wanted, create_graph=True, allow_unused=True)
            pairs = [(g, torch.from_numpy(np.asarray(v[n])).to(values[n].dtype))
                     for n, g in zip(job.checked, grads, strict=True) if g is not None and g.requires_grad]  # fmt: skip
            products = (
                torch.autograd.grad([g for g, _ in pairs], wanted, [d for _, d in pairs], allow_unused=True)
                if pairs else [None] * len(wanted)
            )  # fmt: skip
        return {n: _numpy(h, values[n]) for n, h in zip(job.checked, products, strict=True)}

    return gradient, hvp


def _numpy(g: torch.Tensor | None, like: torch.Tensor) -> A:
    return np.zeros(tuple(like.shape)) if g is None else g.detach().double().numpy()
