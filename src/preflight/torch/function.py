"""Gradient checks for PyTorch: custom autograd Functions and ops, per Jacobian entry.

The backward (and forward-mode AD where defined) is compared with central differences of real evaluations, element
by element, against the noise those differences can explain (calibrated for float32 as for float64).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from preflight._util.validation import check_in_range, check_positive_int
from preflight.check import numdiff
from preflight.check.diagnosis import TensorEvidence, diagnose
from preflight.check.jacobian import Columns, judge_entries
from preflight.check.report import Coordinate, GradcheckReport, TensorResult
from preflight.check.verdict import relative_difference
from preflight.torch._model import check_precision

__all__ = ["check_function"]

A = NDArray[Any]


class _Stopped(Exception):
    """The check cannot go on (an output not finite): the message is the report's ``stopped``."""


def _result(
    name: str, shape: tuple[int, ...], analytic: A, numeric: A, tolerance: A, bad: A, kink: A, worst: int,
    outputs: Callable[[int], tuple[tuple[int, ...], tuple[int, ...] | None]] | None = None,
) -> TensorResult:  # fmt: skip
    excess = np.where(kink, 0.0, np.abs(analytic - numeric) / np.maximum(tolerance, 1e-300))

    def coordinates(flats: list[int]) -> list[Coordinate]:
        out = []
        for flat in flats:
            index, output = outputs(flat) if outputs else (tuple(int(i) for i in np.unravel_index(flat, shape)), None)
            out.append(Coordinate(index, float(analytic[flat]), float(numeric[flat]), float(tolerance[flat]), output))
        return out

    keep = ~kink
    return TensorResult(
        name=name, shape=shape, size=int(analytic.size), checked=int(keep.sum()),
        difference=relative_difference(analytic[keep], numeric[keep]), passed=not bool(bad.any()),
        failed=int(bad.sum()), significance=float(excess.max()) if excess.size else 0.0,
        worst=coordinates(np.argsort(-excess, kind="stable")[:worst].tolist()),
        kinks=coordinates(np.flatnonzero(kink).tolist()),
    )  # fmt: skip


def check_function(
    fn: Callable[..., Any],
    *inputs: Any,
    eps: float | None = None,
    forward_ad: bool | None = None,
    richardson: bool = True,
    max_outputs: int = 1024,
    names: Sequence[str] | None = None,
    seed: int = 0,
    worst: int = 5,
    order: int = 1,
) -> GradcheckReport:
    """Check the backward (and forward-mode AD where defined) of ``fn`` against finite differences, per Jacobian entry.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs)`` returning a tensor or a tuple/list of tensors (an op, or ``MyFunction.apply``).
    *inputs
        Tensors with ``requires_grad=True`` are checked (every floating tensor when none asks for it); anything
        else is passed through. The caller's tensors are never modified. Checked tensors must be float32 or
        float64 (float16 and bfloat16 are too coarse for finite differences).
    eps : float, optional
        Fixed step; default ``cbrt(machine eps) * max(1, |x_i|)`` per element, exactly representable.
    forward_ad : bool, optional
        Check forward-mode AD too. ``None``: where the function defines it (a note says when it does not).
    richardson : bool
        Also evaluate at +-2h: the truncation error is measured instead of assumed (default; inputs are small).
    max_outputs : int
        Up to this many output elements the whole Jacobian is checked; beyond, 16 random output projections.
    names : sequence of str, optional
        Names for the checked inputs (default "input0", "input1", ... by position).
    order : {1, 2}
        2: after the first-order check passes, the backward's own derivatives (double backward), with respect to
        the inputs and to ``grad_output``, in the report's ``second_order`` section
        (:mod:`preflight.torch.second_order`).

    Returns
    -------
    GradcheckReport
        The report every preflight check returns (its ``unit`` is Jacobian entries). Per checked input, the worst
        entries name the input element and the output element. The check stops (``stopped`` says why, ``passed``
        is False) when the function is random, or when an output is not finite at the inputs or at a perturbed
        input.

    Raises
    ------
    ValueError
        No floating input to check, inputs in float16 or bfloat16, bad options.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    >>> check_function(torch.tanh, x).passed
    True
    """
    if order == 2:
        from preflight.torch.second_order import check_function_twice

        return check_function_twice(fn, *inputs, eps=eps, forward_ad=forward_ad, richardson=richardson,
                                    max_outputs=max_outputs, names=names, seed=seed, worst=worst)  # fmt: skip
    if order != 1 or isinstance(order, bool):
        raise ValueError(f"order: expected 1 or 2, got {order!r}")
    check_positive_int(max_outputs, name="max_outputs")
    if eps is not None:
        eps = check_in_range(eps, name="eps", low=0.0, high=1.0, low_open=True)
    start = time.perf_counter()
    positions = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad]
    if not positions:
        positions = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.is_floating_point()]
    if not positions:
        raise ValueError("inputs: expected at least one floating-point tensor to check")
    for i in positions:
        if not inputs[i].is_floating_point():
            raise ValueError(f"inputs[{i}]: expected a floating-point tensor, got dtype {inputs[i].dtype}")
        check_precision(inputs[i].dtype, f"inputs[{i}]", fix=f"pass inputs[{i}].double() (and fn in float64)")
    labels = list(names) if names is not None else [f"input{i}" for i in positions]
    if len(labels) != len(positions):
        raise ValueError(f"names: expected {len(positions)} names (one per checked input), got {len(labels)}")
    dtype = str(inputs[positions[0]].dtype).replace("torch.", "")
    method = "richardson" if richardson else "central"
    job = _FunctionCheck(fn, inputs, positions, max_outputs, seed)
    try:
        job.require_usable()
        job.measure_noise()
        fd = {i: job.columns(i, label, eps, richardson) for label, i in zip(labels, positions, strict=True)}
    except _Stopped as stop:
        seconds = time.perf_counter() - start
        return GradcheckReport(
            passed=False, difference=math.nan, parameters={}, hints=[str(stop)], dtype=dtype, method=method,
            noise=0.0, evaluations=job.evaluations, seconds=seconds, notes=job.notes, stopped=str(stop),
            unit="Jacobian entries",
        )  # fmt: skip
    a_rows = job.analytic()
    backward: dict[str, TensorResult] = {}
    evidence: list[TensorEvidence] = []
    a_all, n_all = [], []
    for label, i in zip(labels, positions, strict=True):
        a = a_rows[i]
        entries = judge_entries(fd[i], a)
        numeric, tolerance, bad, kink = entries.numeric, entries.tolerance, entries.bad, entries.kink
        backward[label] = _result(label, tuple(inputs[i].shape), a.ravel(), numeric.ravel(), tolerance.ravel(),
                                  bad.ravel(), kink.ravel(), worst, job.locator(i))  # fmt: skip
        # Hints read the gradient of <v, outputs> for one random v, in the input's shape (a transposed gradient
        # shows there), with the tolerance |v| @ tolerance that the entries' own tolerances give it.
        shape = tuple(inputs[i].shape)
        theta = inputs[i].detach().double().reshape(-1).numpy()
        projected = (job.v @ a, job.v @ numeric, np.abs(job.v) @ np.where(kink, np.inf, tolerance))
        evidence.append(TensorEvidence(label, shape, np.arange(theta.size), *projected[:2], theta, projected[2],
                                       bool(bad.any())))  # fmt: skip
        a_all.append(a.ravel())
        n_all.append(numeric.ravel())
    forward = job.forward(positions, labels, fd, forward_ad, worst)
    passed = all(r.passed for r in backward.values()) and all(r.passed for r in (forward or {}).values())
    return GradcheckReport(
        passed=passed, difference=relative_difference(np.concatenate(a_all), np.concatenate(n_all)),
        parameters=backward, hints=diagnose(evidence), dtype=dtype, method=method, noise=job.noise,
        evaluations=job.evaluations, seconds=time.perf_counter() - start, notes=job.notes, forward_ad=forward,
        unit="Jacobian entries",
    )  # fmt: skip


class _FunctionCheck:
    def __init__(self, fn: Callable[..., Any], inputs: tuple[Any, ...], positions: list[int], limit: int, seed: int):
        self.fn, self.positions = fn, positions
        contiguous = torch.contiguous_format
        self.inputs = [
            x.detach().clone(memory_format=contiguous) if i in positions else x for i, x in enumerate(inputs)
        ]
        self.positions = positions
        self.notes: list[str] = []
        self.evaluations = 0
        self.mask = self.differentiable_outputs()
        with torch.no_grad():
            first, second = self.outputs(self.inputs), self.outputs(self.inputs)
            self.shapes = [tuple(t.shape) for t in self.tensors(self.fn(*self.inputs))]
        self.first, self.second = first, second
        self.y = first.double()
        m = self.y.numel()
        if m == 0:
            raise ValueError("fn: it returned no floating-point output to differentiate")
        self.identity = m <= limit
        if self.identity:
            self.project = torch.eye(m, dtype=torch.float64)
        else:
            generator = torch.Generator().manual_seed(seed)
            self.project = torch.randn(16, m, generator=generator, dtype=torch.float64)
            self.notes.append(f"{m} output elements: checked through 16 random projections of the output")
        shapes = self.shapes
        self.out_index = [(k, *idx) for k, s in enumerate(shapes) for idx in np.ndindex(*s)] if self.identity else []
        p = self.project.numpy()
        y = self.y.numpy()
        self.v = np.random.default_rng(seed).standard_normal(len(p))
        self.f0 = (p @ y)[:, None]
        self.seed = seed
        # Rounding: of the checked inputs' dtype, and of the outputs' own (a function that casts to float32 rounds
        # like float32 whatever its inputs).
        with torch.no_grad():
            outs = self.tensors(self.fn(*self.inputs))
        self.output_epsilon = max(float(torch.finfo(t.dtype).eps) for t in outs)
        self.input_epsilon = max(float(torch.finfo(self.inputs[i].dtype).eps) for i in positions)
        self.sigma = np.zeros_like(self.f0)
        self.noise = 0.0

    def differentiable_outputs(self) -> list[bool]:
        """Which floating outputs autograd differentiates (batch norm's saved statistics, for one, it does not)."""
        leaves = [x.clone().requires_grad_(True) if i in self.positions else x for i, x in enumerate(self.inputs)]
        with torch.enable_grad():
            items = self.fn(*leaves)
        items = items if isinstance(items, (tuple, list)) else [items]
        mask = [t.requires_grad for t in items if isinstance(t, torch.Tensor) and t.is_floating_point()]
        if len(mask) > sum(mask):
            self.notes.append(f"{len(mask) - sum(mask)} output(s) not differentiable (autograd marks them so): skipped")
        if not any(mask):
            raise ValueError("fn: none of its outputs is differentiable with respect to the checked inputs")
        return mask

    def tensors(self, result: Any) -> list[torch.Tensor]:
        items = result if isinstance(result, (tuple, list)) else [result]
        floats = [t for t in items if isinstance(t, torch.Tensor) and t.is_floating_point()]
        return [t for t, keep in zip(floats, self.mask, strict=False) if keep]

    def output_element(self, flat: int) -> str:
        """Element ``flat`` of the concatenated outputs, by which output and its index there."""
        for k, shape in enumerate(self.shapes):
            size = int(np.prod(shape))
            if flat < size:
                index = tuple(int(v) for v in np.unravel_index(flat, shape)) if shape else ()
                return f"output {k} at index {index}" if len(self.shapes) > 1 else f"the output at index {index}"
            flat -= size
        raise IndexError(flat)

    def require_usable(self) -> None:
        """_Stopped when two calls differ (NaN equal to NaN) or an output is not finite at the given inputs."""
        if self.first.shape != self.second.shape:
            raise _Stopped("the function is random: two calls with the same inputs return outputs of different sizes")
        differ = (self.first != self.second) & ~(self.first.isnan() & self.second.isnan())
        if bool(differ.any()):
            where = int(torch.nonzero(differ)[0, 0])
            raise _Stopped(
                f"the function is random: two calls with the same inputs differ (first at {self.output_element(where)}"
                "); seed it or pass the random draw in as an input"
            )
        bad = ~self.first.isfinite()
        if bool(bad.any()):
            where = int(torch.nonzero(bad)[0, 0])
            raise _Stopped(
                f"the output is not finite at the given inputs: {self.output_element(where)} is "
                f"{float(self.first[where])} ({int(bad.sum())} of {bad.numel()} output elements not finite); "
                "a gradient check needs inputs inside the function's domain"
            )

    def outputs(self, values: list[Any]) -> torch.Tensor:
        self.evaluations += 1
        parts = self.tensors(self.fn(*values))
        return torch.cat([t.detach().reshape(-1).double() for t in parts]) if parts else torch.zeros(0)

    def locator(self, i: int) -> Callable[[int], tuple[tuple[int, ...], tuple[int, ...] | None]]:
        shape = tuple(self.inputs[i].shape)
        n = max(1, int(np.prod(shape)))

        def where(flat: int) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
            row, col = divmod(flat, n)
            index = tuple(int(v) for v in np.unravel_index(col, shape)) if shape else ()
            return index, (tuple(int(v) for v in self.out_index[row]) if self.identity else None)

        return where

    def analytic(self) -> dict[int, A]:
        """Rows ``P @ J`` per checked input (P the identity or random projections), by reverse-mode AD."""
        leaves = [x.clone().requires_grad_(True) if i in self.positions else x for i, x in enumerate(self.inputs)]
        with torch.enable_grad():
            outs = self.tensors(self.fn(*leaves))
            flat = torch.cat([t.reshape(-1) for t in outs])
            wanted = [leaves[i] for i in self.positions]
            rows = self.project.to(flat.dtype)
            try:
                grads = torch.autograd.grad(flat, wanted, rows, retain_graph=True, allow_unused=True,
                                            is_grads_batched=True)  # fmt: skip
            except (RuntimeError, NotImplementedError):
                per_row = [torch.autograd.grad(flat, wanted, r, retain_graph=True, allow_unused=True) for r in rows]
                grads = tuple(
                    torch.stack([g[j] if g[j] is not None else torch.zeros_like(w) for g in per_row])
                    for j, w in enumerate(wanted)
                )
        result = {}
        for i, g, w in zip(self.positions, grads, wanted, strict=True):
            g = torch.zeros((len(rows), *w.shape), dtype=w.dtype) if g is None else g
            result[i] = g.detach().reshape(len(rows), -1).double().numpy()
        return result

    def measure_noise(self) -> None:
        """The rounding noise of each output row, measured: ECnoise on 16 evaluations along a random direction that
        moves every checked element by a few ulps of the coarser of its dtype and the outputs'."""
        generator = np.random.default_rng(self.seed + 7919)
        epsilon = max(self.input_epsilon, self.output_epsilon)
        directions = {}
        for i in self.positions:
            x = self.inputs[i].detach()
            sign = torch.from_numpy(generator.choice([-1.0, 1.0], size=tuple(x.shape)))
            directions[i] = sign * 16 * epsilon * torch.clamp(x.double().abs(), min=1.0)
        rows = []
        with torch.no_grad():
            for k in range(16):
                args = [
                    (x.double() + k * directions[j]).to(x.dtype) if j in directions else x
                    for j, x in enumerate(self.inputs)
                ]
                rows.append((self.project @ self.outputs(args)).numpy())
        values = np.stack(rows, axis=1)
        finite = np.all(np.isfinite(values), axis=1)
        sigma = np.zeros(len(values))
        sigma[finite] = numdiff.estimate_noise_rows(values[finite])
        # Never below the rounding of the row's own value (a row the probe did not move at all).
        self.sigma = np.maximum(sigma, self.output_epsilon * np.abs(self.f0[:, 0]))[:, None]
        self.noise = float(np.max(self.sigma)) if self.sigma.size else 0.0

    def columns(self, i: int, label: str, eps: float | None, richardson: bool) -> Columns:
        """Rows at +-h (and +-2h with ``richardson``) for every element of input i; more positions on demand."""
        x = self.inputs[i]
        flat = x.detach().reshape(-1).numpy()
        if eps is None:
            base = max(float(torch.finfo(x.dtype).eps), self.output_epsilon) ** (1.0 / 3.0)
            h = numdiff.step_size(flat, eps=base).astype(np.float64)
        else:
            h = np.full(flat.size, float(eps))

        def evaluate(scale: float, elements: NDArray[np.intp]) -> tuple[A, A]:
            work = x.clone()
            view = work.view(-1)
            args = [work if j == i else v for j, v in enumerate(self.inputs)]
            columns, moves = [], []
            with torch.no_grad():
                for e in elements.tolist():
                    old = view[e].clone()
                    view[e] = torch.tensor(float(flat[e]) + scale * float(h[e]), dtype=torch.float64)
                    move = float(view[e].double() - old.double())
                    try:
                        out = self.outputs(args)
                    finally:
                        view[e] = old
                    self.require_finite(out, label, x.shape, e, move)
                    columns.append(self.project @ out)
                    moves.append(move)
            values = torch.stack(columns, dim=1).numpy() if columns else np.zeros((len(self.project), 0))
            return values, np.array(moves, dtype=np.float64)

        block = Columns(self.f0, self.sigma, float(torch.finfo(x.dtype).eps), flat.size, evaluate)
        everything = np.arange(flat.size)
        for scale in (1.0, -1.0, 2.0, -2.0) if richardson else (1.0, -1.0):
            block.fill(scale, everything)
        return block

    def require_finite(self, out: torch.Tensor, label: str, shape: Any, e: int, step: float) -> None:
        """_Stopped when an output at a perturbed input is not finite: the step left the function's domain."""
        bad = ~out.isfinite()
        if bool(bad.any()):
            index = tuple(int(v) for v in np.unravel_index(e, tuple(shape))) if len(shape) else ()
            where = self.output_element(int(torch.nonzero(bad)[0, 0]))
            raise _Stopped(
                f"an output is not finite at a perturbed input: {where} is {float(out[bad][0])} with "
                f"{label}{list(index)} moved by {step:+.3g}; the step leaves the function's domain: pass a smaller "
                "eps, or inputs farther from the domain's edge"
            )

    def forward(
        self, positions: list[int], labels: list[str], fd: dict[int, Columns], wanted: bool | None, worst: int
    ) -> dict[str, TensorResult] | None:
        """Columns ``P @ J e_j`` by forward-mode AD, against the same differences; None where undefined."""
        if wanted is False:
            return None
        import torch.autograd.forward_ad as fwad

        make_dual: Any = fwad.make_dual  # untyped in torch's stubs
        unpack_dual: Any = fwad.unpack_dual

        results = {}
        try:
            for label, i in zip(labels, positions, strict=True):
                x = self.inputs[i]
                columns = []
                for e in range(x.numel()):
                    tangent = torch.zeros_like(x).view(-1)
                    tangent[e] = 1.0
                    with fwad.dual_level():
                        args = [make_dual(x, tangent.view(x.shape)) if j == i else v
                                for j, v in enumerate(self.inputs)]  # fmt: skip
                        outs = self.tensors(self.fn(*args))
                        parts = []
                        for t in outs:
                            dual = unpack_dual(t).tangent
                            parts.append(torch.zeros(t.numel()) if dual is None else dual.reshape(-1).double())
                    columns.append(self.project @ torch.cat(parts).detach())
                a = torch.stack(columns, dim=1).numpy() if columns else np.zeros((len(self.project), 0))
                entries = judge_entries(fd[i], a)
                numeric, tolerance, bad, kink = entries.numeric, entries.tolerance, entries.bad, entries.kink
                results[label] = _result(label, tuple(x.shape), a.ravel(), numeric.ravel(), tolerance.ravel(),
                                         bad.ravel(), kink.ravel(), worst, self.locator(i))  # fmt: skip
        except (RuntimeError, NotImplementedError) as exc:
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            self.notes.append(f"forward-mode AD not checked: not defined for this function ({reason})")
            if wanted:
                raise ValueError(f"forward_ad: forward-mode AD is not defined for this function ({reason})") from None
            return None
        return results
