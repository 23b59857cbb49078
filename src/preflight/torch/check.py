"""Gradient checks for PyTorch: every parameter of an ``nn.Module``, and custom autograd Functions and ops.

Both compare autograd with central differences of real evaluations, element by element, against the noise those
differences can explain (calibrated for float32 as for float64), and return the same report as the NumPy checker.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.func import functional_call

from preflight._validation import check_choice, check_positive_int, describe
from preflight.gradcheck import GradcheckReport, NondeterministicLossError, gradcheck
from preflight.torch._evaluators import ChainEvaluator, LoopEvaluator, VmapEvaluator
from preflight.torch._numeric import Differences, machine_epsilon, steps
from preflight.torch._report import CheckReport, Element, TensorResult, hints_for, relative_difference

__all__ = ["check_function", "check_module"]

A = NDArray[Any]
Mode = Literal["as_is", "eval", "train"]
Strategy = Literal["auto", "chain", "vmap", "loop"]


def _split_batch(batch: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    if isinstance(batch, torch.Tensor):
        return (batch,), ()
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        inputs, target = batch
        return (tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)), (target,)
    raise ValueError(f"batch: expected a tensor of inputs or a pair (inputs, target), got {describe(batch)}")


def _scalar(value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ValueError(f"{what}: expected a scalar tensor, got {describe(value)}")
    return value.reshape(())


def check_module(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor] | None,
    batch: Any,
    *,
    eps: float | None = None,
    mode: Mode = "as_is",
    parameters: Sequence[str] | None = None,
    method: str = "central",
    sample: int | float | None = None,
    screen: bool | int = False,
    strategy: Strategy = "auto",
    seed: int = 0,
    progress: bool | None = None,
) -> GradcheckReport:
    """Check every trainable parameter of ``model`` against autograd, with :func:`preflight.gradcheck.gradcheck`.

    The parameters are copied once into NumPy arrays that share memory with torch tensors; the engine perturbs
    them, measures the loss's rounding noise, decides per element, looks twice at suspects (Richardson, kinks) and
    names the kind of bug. Perturbed losses of a whole tensor come from a torch evaluator (see ``strategy``).

    Parameters
    ----------
    model : nn.Module
        Called through ``torch.func.functional_call``: its parameters, buffers, ``.grad`` and train/eval flags are
        left as they were.
    loss_fn : callable or None
        ``loss_fn(model(*inputs), target)`` (``loss_fn(model(inputs))`` when ``batch`` is a tensor); ``None`` when
        the model returns the scalar loss itself.
    batch : tensor or (inputs, target)
    eps : float, optional
        Step base (default ``cbrt(machine eps)``, per element times ``max(1, |theta_i|)``).
    mode : {"as_is", "eval", "train"}
        Train/eval mode during the check (restored afterwards). Dropout in training mode makes the loss random:
        the check stops with :class:`preflight.gradcheck.NondeterministicLossError` saying so. Batch norm in training
        mode uses the batch statistics; its running statistics are updated on copies only.
    parameters : sequence of str, optional
        Names to check (default: every parameter with ``requires_grad``). Frozen ones are reported in the notes.
    method, sample, screen, seed, progress
        As in :func:`preflight.gradcheck.gradcheck` (``screen``: a few random directions, a cost independent of
        the parameter count, then coordinates only in the tensors that fail).
    strategy : {"auto", "chain", "vmap", "loop"}
        How perturbed losses are computed. "chain": an ``nn.Sequential`` with a cached prefix and rank-one updates
        of Linear layers; "vmap": the whole model vmapped over a chunk of perturbations; "loop": one call each.
        "auto" takes the first that applies and falls back to the loop if vmap fails on the model (a note says so).

    Returns
    -------
    GradcheckReport
        The NumPy checker's report; ``notes`` add the strategy, frozen parameters, buffers and mode.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    >>> batch = (torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1]))
    >>> check_module(model, torch.nn.functional.cross_entropy, batch).passed
    True
    """
    check_choice(mode, name="mode", allowed=("as_is", "eval", "train"))
    check_choice(strategy, name="strategy", allowed=("auto", "chain", "vmap", "loop"))
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {describe(model)}")
    inputs, targets = _split_batch(batch)
    flags = {m: m.training for m in model.modules()}
    try:
        if mode != "as_is":
            model.train(mode == "train")
        job = _ModuleCheck(model, loss_fn, inputs, targets, parameters)
        evaluator = job.evaluator(strategy)
        try:
            report = gradcheck(
                job.loss, job.leaves, job.analytic(), eps=eps, sample=sample, seed=seed, method=method,
                screen=screen, evaluator=evaluator, progress=progress,
            )  # fmt: skip
        except NondeterministicLossError as exc:
            raise NondeterministicLossError(_random_loss_message(model, str(exc))) from None
        return dataclasses.replace(report, notes=job.notes + report.notes)
    finally:
        for m, training in flags.items():
            m.training = training


def _random_loss_message(model: nn.Module, engine_message: str) -> str:
    drop = any(isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0 for m in model.modules())
    cause = "dropout is active (the model is in training mode)" if drop else "something in the model or loss samples"
    return f"{engine_message} In this model {cause}: pass mode='eval' (or call model.eval()), or seed the sampling."


class _ModuleCheck:
    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[..., torch.Tensor] | None,
        inputs: tuple[Any, ...],
        targets: tuple[Any, ...],
        names: Sequence[str] | None,
    ) -> None:
        self.model, self.loss_fn, self.inputs, self.targets = model, loss_fn, inputs, targets
        named = dict(model.named_parameters())
        unknown = sorted(set(names or ()) - set(named))
        if unknown:
            raise ValueError(f"parameters: {unknown} are not parameters of the model; it has {sorted(named)}")
        self.frozen = [n for n, p in named.items() if not p.requires_grad]
        self.checked = [n for n, p in named.items() if p.requires_grad and (names is None or n in names)]
        if not self.checked:
            raise ValueError("model: it has no trainable parameter to check (all frozen or none selected)")
        for n in self.checked:
            if not named[n].is_floating_point() or named[n].device.type != "cpu":
                raise ValueError(f"parameters[{n!r}]: expected a floating-point CPU tensor, got {named[n].dtype} "
                                 f"on {named[n].device}")  # fmt: skip
        # Working copies: the engine perturbs the NumPy arrays in place, the torch tensors see the same memory.
        self.tensors = {n: p.detach().clone() for n, p in named.items()}
        self.leaves = {n: self.tensors[n].numpy() for n in self.checked}
        self.buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        self.notes: list[str] = []
        self._describe_state()

    def loss_of_output(self, output: Any) -> torch.Tensor:
        value = output if self.loss_fn is None else self.loss_fn(output, *self.targets)
        return _scalar(value, "loss_fn" if self.loss_fn is not None else "model output (no loss_fn)")

    def call(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        output = functional_call(self.model, {**values, **self.buffers}, self.inputs)
        return self.loss_of_output(output)

    def loss(self, _params: Any) -> float:
        with torch.no_grad():
            return float(self.call(self.tensors))

    def analytic(self) -> dict[str, A]:
        leaves = {n: p.clone().requires_grad_(n in self.checked) for n, p in self.tensors.items()}
        with torch.enable_grad():
            loss = self.call(leaves)
            grads = torch.autograd.grad(loss, [leaves[n] for n in self.checked], allow_unused=True)
        unused = [n for n, g in zip(self.checked, grads, strict=True) if g is None]
        if unused:
            self.notes.append(f"autograd returned no gradient for {unused}: the loss does not reach them")
        return {
            n: (np.zeros(self.leaves[n].shape) if g is None else g.detach().double().numpy())
            for n, g in zip(self.checked, grads, strict=True)
        }

    def evaluator(self, strategy: str) -> _TensorEvaluator:
        chain_ok = ChainEvaluator.supports(self.model, self.inputs) and not self.frozen
        if strategy == "chain" and not chain_ok:
            raise ValueError("strategy: 'chain' needs an nn.Sequential of one input, no frozen parameter, no "
                             "dropout or batch norm in training mode")  # fmt: skip
        if strategy in ("auto", "chain") and chain_ok:
            self.notes.append("strategy: chain (cached prefix, rank-one updates of Linear layers, vmapped suffix)")
            model = self.model
            assert isinstance(model, nn.Sequential)
            with torch.no_grad():
                engine: Any = ChainEvaluator(model, self.inputs[0], self.loss_of_output)
        elif strategy in ("auto", "vmap"):
            self.notes.append("strategy: vmap (whole model through functional_call, batched over perturbations)")
            engine = VmapEvaluator(self.call, self.tensors)
        else:
            self.notes.append("strategy: loop (one model call per perturbation)")
            engine = LoopEvaluator(self.call, self.tensors)
        return _TensorEvaluator(engine, self)

    def _describe_state(self) -> None:
        if self.frozen:
            self.notes.append(f"frozen (requires_grad=False), not checked: {self.frozen}")
        if self.buffers:
            self.notes.append(f"buffers held fixed: {sorted(self.buffers)}")
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if norms:
            self.notes.append(
                "batch norm in training mode: checked with batch statistics; running statistics updated on copies only"
                if any(m.training for m in norms)
                else "batch norm in eval mode: checked with the running statistics"
            )
        drop = [m for m in self.model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
        if drop and not any(m.training for m in drop):
            self.notes.append("dropout in eval mode: inactive during the check")


class _TensorEvaluator:
    """The engine's PerturbedLoss over a torch evaluator: all perturbed losses of a tensor, in chunks."""

    def __init__(self, engine: Any, job: _ModuleCheck) -> None:
        self.engine, self.job = engine, job
        self.f0 = job.loss(None)

    def __call__(self, offsets: Mapping[str, A], /) -> dict[str, A]:
        out = {}
        with torch.no_grad():
            for name, offset in offsets.items():
                flat = np.asarray(offset).reshape(-1)
                index = np.flatnonzero(flat)
                costs = np.full(flat.size, self.f0)
                if index.size:
                    coords = torch.from_numpy(index)
                    deltas = torch.from_numpy(flat[index].astype(self.job.leaves[name].dtype))
                    costs[index] = self.losses(name, coords, deltas)
                out[name] = costs.reshape(np.shape(offset))
        return out

    def losses(self, name: str, coords: torch.Tensor, deltas: torch.Tensor) -> A:
        size = self.engine.chunk(name) if hasattr(self.engine, "chunk") else len(coords)
        parts = []
        for start in range(0, len(coords), size):
            c, d = coords[start : start + size], deltas[start : start + size]
            try:
                parts.append(self.engine.losses(name, c, d))
            except (RuntimeError, ValueError, NotImplementedError) as exc:
                if isinstance(self.engine, LoopEvaluator):
                    raise
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                self.job.notes.append(f"strategy: {type(self.engine).__name__} failed ({reason}); fell back to a loop")
                self.engine = LoopEvaluator(self.job.call, self.job.tensors)
                parts.append(self.engine.losses(name, c, d))
        return torch.cat(parts).numpy()


def _result(
    name: str, shape: tuple[int, ...], analytic: A, numeric: A, tolerance: A, bad: A, kink: A, worst: int,
    outputs: Callable[[int], tuple[tuple[int, ...], tuple[int, ...] | None]] | None = None,
) -> TensorResult:  # fmt: skip
    excess = np.abs(analytic - numeric) / np.maximum(tolerance, 1e-300)
    order = np.argsort(-excess, kind="stable")[:worst]
    elements = []
    for flat in order.tolist():
        index, output = outputs(flat) if outputs else (tuple(int(i) for i in np.unravel_index(flat, shape)), None)
        elements.append(Element(index, float(analytic[flat]), float(numeric[flat]), float(tolerance[flat]), output))
    return TensorResult(
        name=name, shape=shape, checked=int(analytic.size), difference=relative_difference(analytic, numeric),
        failed=int(bad.sum()), kinks=int(kink.sum()), worst=tuple(elements),
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
) -> CheckReport:
    """Check the backward (and forward-mode AD where defined) of ``fn`` against finite differences, per Jacobian entry.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs)`` returning a tensor or a tuple/list of tensors (an op, or ``MyFunction.apply``).
    *inputs
        Tensors with ``requires_grad=True`` are checked (every floating tensor when none asks for it); anything
        else is passed through. The caller's tensors are never modified.
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

    Returns
    -------
    CheckReport
        Per checked input, the worst entries name the input element and the output element.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    >>> check_function(torch.tanh, x).passed
    True
    """
    check_positive_int(max_outputs, name="max_outputs")
    start = time.perf_counter()
    positions = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad]
    if not positions:
        positions = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.is_floating_point()]
    if not positions:
        raise ValueError("inputs: expected at least one floating-point tensor to check")
    for i in positions:
        if not inputs[i].is_floating_point():
            raise ValueError(f"inputs[{i}]: expected a floating-point tensor, got dtype {inputs[i].dtype}")
    labels = list(names) if names is not None else [f"input{i}" for i in positions]
    if len(labels) != len(positions):
        raise ValueError(f"names: expected {len(positions)} names (one per checked input), got {len(labels)}")
    job = _FunctionCheck(fn, inputs, positions, max_outputs, seed)
    if job.random:
        return job.stopped_report(labels)
    a_rows = job.analytic()
    backward, arrays, a_all, n_all = {}, {}, [], []
    fd = {i: job.differences(i, eps, richardson) for i in positions}
    for label, i in zip(labels, positions, strict=True):
        a = a_rows[i]
        numeric, tolerance, bad, kink = fd[i].verdict(a)
        backward[label] = _result(label, tuple(inputs[i].shape), a.ravel(), numeric.ravel(), tolerance.ravel(),
                                  bad.ravel(), kink.ravel(), worst, job.locator(i))  # fmt: skip
        # Hints read the gradient of <v, outputs> for one random v, in the input's shape (a transposed gradient
        # shows there); an input element is bad when any of its Jacobian entries is.
        shape = tuple(inputs[i].shape)
        arrays[label] = ((job.v @ a).reshape(shape), (job.v @ numeric).reshape(shape), bad.any(axis=0).reshape(shape))
        a_all.append(a.ravel())
        n_all.append(numeric.ravel())
    forward = job.forward(positions, labels, fd, forward_ad, worst)
    return CheckReport(
        parameters=backward, difference=relative_difference(np.concatenate(a_all), np.concatenate(n_all)),
        hints=[h.replace(" elements", " Jacobian entries") for h in hints_for(arrays)], notes=job.notes,
        dtype=str(inputs[positions[0]].dtype).replace("torch.", ""), evaluations=job.evaluations,
        seconds=time.perf_counter() - start, forward_ad=forward,
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
        self.random = not torch.equal(first, second)
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
        shapes = self.output_shapes
        self.out_index = [(k, *idx) for k, s in enumerate(shapes) for idx in np.ndindex(*s)] if self.identity else []
        p = self.project.numpy()
        y = self.y.numpy()
        self.v = np.random.default_rng(seed).standard_normal(len(p))
        self.f0 = (p @ y)[:, None]
        # Rounding of one evaluation of row r: relative to the output elements it mixes and to the largest
        # magnitude around (an op such as x - mean(x) rounds relative to its inputs, not its outputs).
        size = max(float(np.abs(y).max()), max(float(inputs[i].detach().abs().max()) for i in positions), 1e-300)
        self.scale = (np.abs(p) @ np.abs(y) + np.abs(p).max(axis=1) * size)[:, None]

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

    @property
    def output_shapes(self) -> list[tuple[int, ...]]:
        with torch.no_grad():
            return [tuple(t.shape) for t in self.tensors(self.fn(*self.inputs))]

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

    def differences(self, i: int, eps: float | None, richardson: bool) -> Differences:
        x = self.inputs[i]
        hp, hm = steps(x.reshape(-1), eps)
        values = {"f_plus": hp, "f_minus": -hm}
        if richardson:
            hp2, hm2 = steps(x.reshape(-1), eps, scale=2.0)
            values.update(f_plus2=hp2, f_minus2=-hm2)
        p = self.project
        found: dict[str, A] = {}
        with torch.no_grad():
            for key, deltas in values.items():
                work = x.clone()
                flat = work.view(-1)
                args = [work if j == i else v for j, v in enumerate(self.inputs)]
                columns = []
                for e, d in enumerate(deltas.tolist()):
                    old = flat[e].clone()
                    flat[e] = old + d
                    columns.append(p @ self.outputs(args))
                    flat[e] = old
                found[key] = torch.stack(columns, dim=1).numpy() if columns else np.zeros((len(p), 0))
        return Differences(
            f0=self.f0, h_plus=hp.double().numpy(), h_minus=hm.double().numpy(), scale=self.scale,
            epsilon=machine_epsilon(x.dtype), **found,
        )  # fmt: skip

    def forward(
        self, positions: list[int], labels: list[str], fd: dict[int, Differences], wanted: bool | None, worst: int
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
                numeric, tolerance, bad, kink = fd[i].verdict(a)
                results[label] = _result(label, tuple(x.shape), a.ravel(), numeric.ravel(), tolerance.ravel(),
                                         bad.ravel(), kink.ravel(), worst, self.locator(i))  # fmt: skip
        except (RuntimeError, NotImplementedError) as exc:
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            self.notes.append(f"forward-mode AD not checked: not defined for this function ({reason})")
            if wanted:
                raise ValueError(f"forward_ad: forward-mode AD is not defined for this function ({reason})") from None
            return None
        return results

    def stopped_report(self, labels: list[str]) -> CheckReport:
        where = int(torch.nonzero(self.first != self.second)[0, 0]) if self.first.shape == self.second.shape else 0
        hint = (
            f"the function is random: two calls with the same inputs differ (first at output element {where}); "
            "seed it or pass the random draw in as an input"
        )
        return CheckReport(parameters={}, difference=math.nan, hints=[hint], evaluations=2, stopped=hint)
