"""Gradient checks for PyTorch: every parameter of an ``nn.Module``.

Autograd is compared with central differences of real evaluations, element by element, against the noise those
differences can explain (calibrated for float32 as for float64), by :func:`preflight.gradcheck.gradcheck` itself.
Custom autograd Functions and ops are checked by :func:`preflight.torch.function.check_function` (re-exported here).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from preflight._util.progress import should_show_progress
from preflight._util.validation import check_choice, describe
from preflight.check.engine import GradcheckReport, NondeterministicLossError, gradcheck
from preflight.check.reference import check_reference
from preflight.torch._evaluators import ChainEvaluator, LoopEvaluator, VmapEvaluator, class_targets
from preflight.torch._model import (
    FunctionalModel,
    check_precision,
    expected_coordinates,
    random_loss_message,
    scalar_loss,
    shared_parameters,
    split_batch,
)
from preflight.torch._reference import module_reference, needs_reference
from preflight.torch.function import check_function
from preflight.torch.graph import build_graph_evaluator, linear_only

__all__ = ["check_function", "check_module"]

A = NDArray[Any]
Mode = Literal["as_is", "eval", "train"]
Strategy = Literal["auto", "chain", "graph", "vmap", "loop"]
#: What each strategy's note says it does.
STRATEGIES = {
    "chain": "cached prefix, rank-one Linear updates (Taylor series through a Tanh), vmapped or closed-form loss",
    "graph": "traced graph, cached forward, structured update of the moved layer, vmapped downstream nodes",
    "vmap": "whole model through functional_call, batched over perturbations",
    "loop": "one model call per perturbation",
}
#: How to check a low-precision model instead.
MODULE_FIX = "check a copy, e.g. copy.deepcopy(model).double() with the batch's floating tensors .double()"
#: The progress estimate times the evaluator on up to this many perturbed losses, or until this many seconds pass
#: (a few hundredths of a second: small next to the 2 s from which a bar is worth showing).
PROBE_LOSSES, PROBE_SECONDS = 64, 0.02


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
    order: int = 1,
    client: Any = None,
    reference: bool | None = None,
) -> GradcheckReport:
    """Check every trainable parameter of ``model`` against autograd, with :func:`preflight.gradcheck.gradcheck`.

    The parameters are copied once into NumPy arrays that share memory with torch tensors; the engine perturbs
    them, measures the loss's rounding noise, decides per element, looks twice at suspects (Richardson, kinks) and
    names the kind of bug. Perturbed losses of a whole tensor come from a torch evaluator (see ``strategy``).

    Parameters
    ----------
    model : nn.Module
        Called through ``torch.func.functional_call``: its parameters, buffers, ``.grad`` and train/eval flags are
        left as they were. Its checked parameters must be float32 or float64 (float16 and bfloat16 are too coarse
        for finite differences: check a ``.double()`` copy). A parameter shared by several layers (tied weights,
        a module used twice) is one tensor: its gradient sums every use.
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
    method, sample, screen, seed
        As in :func:`preflight.gradcheck.gradcheck` (``screen``: a few random directions, a cost independent of
        the parameter count, then coordinates only in the tensors that fail).
    progress : bool, optional
        Progress bar (tqdm, if installed). By default gradcheck's rule, shown when the check should take more than
        2 s, with the cost of one perturbed loss timed on the strategy actually used (a vmapped or cached loss
        costs far less than a whole-model call). With ``screen`` the number of coordinates is known only after
        the screen: gradcheck's own estimate decides.
    strategy : {"auto", "chain", "graph", "vmap", "loop"}
        How perturbed losses are computed. "chain": a plain ``nn.Sequential`` with a cached prefix and rank-one
        updates of Linear layers (not with a parameter used in more than one place); "graph": the model traced by
        ``torch.fx``, a cached forward, the moved layer's output updated by structure (Linear, Conv1d/2d,
        Embedding, LayerNorm, BatchNorm in eval mode; other layers rerun alone) and only the downstream nodes rerun
        (:mod:`preflight.torch.graph`); "vmap": the whole model vmapped over a chunk of perturbations; "loop": one
        call each. "auto": the chain for a Sequential whose layers with parameters are all Linear, else the graph,
        else the chain or vmap, and the loop if vmap fails on the model; the note "strategy: ..." names the one
        used, and why the faster ones did not apply.
    order : {1, 2}
        2: after the first-order check passes, autograd's Hessian-vector products (double backward) against
        central differences of its gradient, for a few random directions, each tensor's own, and every Hessian
        column up to 2,000 parameters (a sample above), in the report's ``second_order`` section
        (:mod:`preflight.check.second_order`).
    client : dask.distributed.Client, optional
        Compute the perturbed losses on a Dask cluster (:mod:`preflight.check.distributed`): the evaluator is
        shipped once per worker, the coordinates go out in ranges; the noise and the verdict stay here.
    reference : bool, optional
        With float32 parameters, run the same check on a float64 copy of the model and batch too, and fail a
        tensor that either check fails (:mod:`preflight.check.reference`): float32 differences resolve an error
        only to ~1e-3 of a gradient element among dense ReLU kinks, the copy to 8 float32 ulps of the tensor's
        largest one. The float32 check still runs (it alone sees a backward that loses precision in float32). A
        model that does not run in float64 (an error, or a loss still in float32) is checked in float32 alone,
        with a note saying why. ``None`` (default): the copy unless ``sample`` is given (a sampled check is for
        models too large to check whole; float64 convolutions can cost several times float32's); True: always.

    Returns
    -------
    GradcheckReport
        The NumPy checker's report; ``notes`` add the strategy, frozen parameters, buffers and mode.

    Raises
    ------
    NondeterministicLossError
        Two calls at the same parameters give different losses (dropout in training mode, sampling).
    ValueError
        A bad argument, a loss that is not a scalar, parameters in float16 or bfloat16.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    >>> batch = (torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 0, 1, 1]))
    >>> check_module(model, torch.nn.functional.cross_entropy, batch).passed
    True
    """
    check_choice(mode, name="mode", allowed=("as_is", "eval", "train"))
    check_choice(strategy, name="strategy", allowed=("auto", "chain", "graph", "vmap", "loop"))
    check_reference(reference, optional=True)
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(f"order: expected 1 or 2, got {order!r}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {describe(model)}")
    if isinstance(parameters, str):
        raise ValueError(f"parameters: expected a list of parameter names, got the string {parameters!r}; pass "
                         f"[{parameters!r}]")  # fmt: skip
    inputs, targets = split_batch(batch)
    flags = {m: m.training for m in model.modules()}
    try:
        if mode != "as_is":
            model.train(mode == "train")
        job = _ModuleCheck(model, loss_fn, inputs, targets, parameters)
        job.require_deterministic()
        evaluator = job.evaluator(strategy)
        show = _show_progress(progress, evaluator, job, method, sample, screen)
        grads: Any = job.analytic()
        hvp = None
        if order == 2:
            from preflight.torch.second_order import module_derivatives

            grads, hvp = module_derivatives(job)
        try:
            report = gradcheck(
                job.loss, job.leaves, grads, eps=eps, sample=sample, seed=seed, method=method,
                screen=screen, evaluator=evaluator, progress=show, hvp=hvp, client=client,
            )  # fmt: skip
        except NondeterministicLossError:
            raise NondeterministicLossError(random_loss_message(model, None)) from None
        report = dataclasses.replace(report, notes=job.final_notes() + report.notes)
        if reference is not False and needs_reference([job.tensors[n] for n in job.checked]):
            again = functools.partial(check_module, eps=eps, parameters=parameters, method=method,
                                      sample=sample, screen=screen, strategy=strategy, seed=seed, progress=progress,
                                      order=order, client=client, reference=False)  # fmt: skip
            report = module_reference(report, model, loss_fn, batch, again, reference or sample is None)
        return report
    finally:
        for m, training in flags.items():
            m.training = training


def _show_progress(
    progress: bool | None, evaluator: _TensorEvaluator, job: _ModuleCheck, method: str, sample: Any, screen: Any
) -> bool | None:
    """gradcheck's rule (:func:`preflight._progress.should_show_progress`), on the cost of the evaluator used.

    gradcheck estimates a check's duration from one whole-model call per perturbed loss; a vmapped or cached
    perturbed loss costs a small fraction of that, so the adapter times its own evaluator instead.
    """
    if progress is not None or screen:
        return progress  # with a screen, only gradcheck knows how many coordinates it will check
    if importlib.util.find_spec("tqdm") is None or not should_show_progress(None, math.inf):
        return False  # no bar could show (no tqdm, or stderr not a terminal): spare the timing
    per_coordinate = {"forward": 1, "richardson": 4}.get(method, 2)
    total = sum(job.leaves[n].size for n in job.checked)
    seconds = per_coordinate * expected_coordinates(total, sample) * evaluator.seconds_per_loss()
    return should_show_progress(None, seconds)


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
            check_precision(named[n].dtype, f"model (parameter {n!r})", fix=MODULE_FIX)
        for t in (*inputs, *targets):
            if isinstance(t, torch.Tensor):
                check_precision(t.dtype, "batch", fix=MODULE_FIX)
                if t.device.type != "cpu":
                    fix = "a meta tensor has no values: pass real data" if t.is_meta else "move it with .cpu()"
                    raise ValueError(f"batch: expected CPU tensors (the check runs on the CPU), got a tensor on "
                                     f"{t.device}; {fix}")  # fmt: skip
        self.shared = shared_parameters(model)
        self.functional = FunctionalModel(model)
        # Working copies: the engine perturbs the NumPy arrays in place, the torch tensors see the same memory.
        self.tensors = {n: p.detach().clone() for n, p in named.items()}
        self.leaves = {n: self.tensors[n].numpy() for n in self.checked}
        self.buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        self.notes: list[str] = []
        self.strategy, self.chain_refused = "", cast(str | None, None)  # why "auto" did not take the chain
        #: Set when the strategy failed on the model: (the strategy, why, the tensors it had computed before).
        self.fallback: tuple[str, str, list[str]] | None = None
        self._describe_state()

    def loss_of_output(self, output: Any) -> torch.Tensor:
        value = output if self.loss_fn is None else self.loss_fn(output, *self.targets)
        return scalar_loss(value, "loss_fn" if self.loss_fn is not None else "model output (no loss_fn)")

    def call(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_of_output(self.functional({**values, **self.buffers}, self.inputs))

    def loss(self, _params: Any) -> float:
        with torch.no_grad():
            return float(self.call(self.tensors))

    def require_deterministic(self) -> None:
        """NondeterministicLossError, with the torch advice first, when two calls give different losses."""
        first, again = self.loss(None), self.loss(None)
        if not math.isfinite(first):
            raise ValueError(f"loss: the loss at the model's parameters is {first}, not a finite number, so there "
                             "is no gradient to check; look for NaN/inf in the batch, an overflow in the model or "
                             "a log(0) in loss_fn")  # fmt: skip
        if first != again and not (math.isnan(first) and math.isnan(again)):
            raise NondeterministicLossError(random_loss_message(self.model, (first, again)))

    def analytic(self) -> dict[str, A]:
        leaves = {n: p.clone().requires_grad_(n in self.checked) for n, p in self.tensors.items()}
        with torch.enable_grad():
            loss = self.call(leaves)
            if not loss.requires_grad:
                raise ValueError("loss_fn: the loss is not connected to the parameters through autograd (detached, "
                                 "computed under torch.no_grad(), or rebuilt from .item() or .numpy()); return the "
                                 "loss tensor as computed")  # fmt: skip
            grads = torch.autograd.grad(loss, [leaves[n] for n in self.checked], allow_unused=True)
        unused = [n for n, g in zip(self.checked, grads, strict=True) if g is None]
        if unused:
            self.notes.append(f"autograd returned no gradient for {unused}: the loss does not reach them")
        return {
            n: (np.zeros(self.leaves[n].shape) if g is None else g.detach().double().numpy())
            for n, g in zip(self.checked, grads, strict=True)
        }

    def evaluator(self, strategy: str) -> _TensorEvaluator:
        sequential = ChainEvaluator.supports(self.model, self.inputs) and not self.frozen
        if strategy == "chain" and not sequential:
            raise ValueError("strategy: 'chain' needs a plain nn.Sequential of one input, no frozen parameter, no "
                             "dropout or batch norm in training mode")  # fmt: skip
        if strategy == "chain" and self.shared:
            raise ValueError(f"strategy: 'chain' cannot check {self._shared_text()}; use 'vmap' or 'auto'")
        chain_fits = sequential and not self.shared
        if strategy == "chain" or (strategy == "auto" and chain_fits and linear_only(self.model)):
            engine: Any = self._chain()
        elif strategy in ("auto", "graph", "vmap"):
            self.strategy = "vmap"
            engine = VmapEvaluator(self.call, self.tensors)
            if strategy == "auto" and sequential and self.shared:
                self.chain_refused = f"not chain: it cannot check {self._shared_text()}"
            if strategy in ("auto", "graph"):
                engine = self._graph(engine, strategy)
            if strategy == "auto" and chain_fits and self.strategy == "vmap":
                engine = self._chain()  # layers other than Linear, but the graph does not apply: the chain still does
        else:
            self.strategy = "loop"
            engine = LoopEvaluator(self.call, self.tensors)
        return _TensorEvaluator(engine, self)

    def _chain(self) -> ChainEvaluator:
        self.strategy, model = "chain", self.model
        assert isinstance(model, nn.Sequential)
        with torch.no_grad():
            return ChainEvaluator(model, self.inputs[0], self.loss_of_output, class_targets(self.loss_fn, self.targets))

    def _graph(self, whole: VmapEvaluator, strategy: str) -> Any:
        """The graph evaluator over ``whole`` (the vmap evaluator), or ``whole`` with the reason noted."""
        with torch.no_grad():
            graph, why = build_graph_evaluator(self.model, self.inputs, self.loss_of_output, whole, set(self.shared))
        if graph is None:
            if strategy == "graph":
                raise ValueError(f"strategy: 'graph' does not apply to this model: {why}; use 'vmap' or 'auto'")
            self.chain_refused = "; ".join(filter(None, [self.chain_refused, f"not graph: {why}"]))
            return whole
        self.strategy = "graph"
        return graph

    def _shared_text(self) -> str:
        uses = "; ".join(f"{n} (also {', '.join(others[1:])})" for n, others in self.shared.items())
        return (
            f"parameters used by more than one layer ({uses}): tied weights or a module used twice, and a rank-one "
            "update of one layer would miss the others"
        )

    def final_notes(self) -> list[str]:
        """The strategy actually used (first), then what was found about the model's state."""
        if self.fallback is None:
            note = f"strategy: {self.strategy} ({STRATEGIES[self.strategy]})"
            note += f"; {self.chain_refused}" if self.chain_refused else ""
        else:
            failed, reason, done = self.fallback
            note = f"strategy: loop ({STRATEGIES['loop']}): {failed} failed on this model ({reason})"
            note += f"; {failed} had computed {done} before" if done else ""
            note += f"; {self.chain_refused}" if self.chain_refused else ""
        return [note, *self.notes]

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
        self.done: list[str] = []

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
                    self.done += [] if name in self.done else [name]
                out[name] = costs.reshape(np.shape(offset))
        return out

    def worker_state(self) -> tuple[str, str, list[str]] | None:  # a copy on a Dask worker: its fallback, if any
        return self.job.fallback

    def merge_worker_state(self, fallback: tuple[str, str, list[str]]) -> None:  # the first fallback seen
        self.job.fallback = self.job.fallback or fallback

    def range_losses(self, name: str, index: A, steps: A) -> A:
        """The perturbed losses at flat positions ``index`` moved by ``steps`` (a Dask task's range)."""
        dtype = self.job.leaves[name].dtype
        with torch.no_grad():
            return self.losses(name, torch.from_numpy(index), torch.from_numpy(steps.astype(dtype)))

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
                self.job.fallback = (self.job.strategy, reason, list(self.done))
                self.engine = LoopEvaluator(self.job.call, self.job.tensors)
                parts.append(self.engine.losses(name, c, d))
        return torch.cat(parts).numpy()

    def seconds_per_loss(self) -> float:
        """One perturbed loss's cost on this evaluator: timed on a few of the largest tensor's coordinates."""
        name = max(self.job.checked, key=lambda n: self.job.leaves[n].size)
        size, count, dtype = self.job.leaves[name].size, 1, self.job.tensors[name].dtype
        with torch.no_grad():
            self.losses(name, torch.arange(1), torch.zeros(1, dtype=dtype))  # untimed: vmap's first call traces
            while True:
                coords = torch.arange(min(count, size))
                clock = time.perf_counter()
                self.losses(name, coords, torch.zeros(len(coords), dtype=dtype))
                elapsed = time.perf_counter() - clock
                if elapsed > PROBE_SECONDS or count >= min(size, PROBE_LOSSES):
                    return elapsed / len(coords)
                count *= 2
