"""A health monitor for real training loops: the one-point diagnosis, step after step, and verdicts over time.

``Monitor(model, every=50)`` is a no-op between monitored steps: on steps 0, every, 2 every, ... it hooks the
Linear/Conv layers for one forward and backward pass (:mod:`preflight.torch.monitor_hooks`), measures the update
the optimizer made, and hands the rows to a :class:`preflight.propagation.Timeline`, which judges them with the
one-point diagnosis' thresholds and remembers when each verdict began. Between monitored steps only two cheap hooks
stay on the model: they check its output for NaN and infinity (one reduction of the output; ``watch_nonfinite=False``
turns it off) and, when one appears, run the forward pass once more to name the first module where it does.

A step ends at ``monitor.step()`` (called after ``optimizer.step()``), or by itself after every
``optimizer.step()`` when the optimizer is given.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from preflight._util.validation import check_positive_int, describe
from preflight._util.warn import warn as issue_warning
from preflight.propagation import HealthReport, HealthVerdict, HealthWarning, Thresholds, Timeline
from preflight.propagation.timeline import MAX_UPDATE_RATIO
from preflight.torch.initialize import LAYERS, following_activations
from preflight.torch.monitor_hooks import StepRecorder, all_finite, locate_nonfinite
from preflight.torch.monitor_writers import Listener, tensorboard_listener

__all__ = ["COMPILED_NOTE", "Monitor", "NonFiniteError"]

#: What a compiled model's report says about what could not be seen.
COMPILED_NOTE = (
    "the model is compiled (torch.compile): compiled code skips forward hooks, so activations and their gradients "
    "were not recorded and the dead, saturated, vanishing and exploding verdicts are off; parameter gradients, "
    "update ratios and non-finite values were watched. For the full view, monitor a run of the uncompiled model "
    "(model._orig_mod), for instance its first few hundred steps."
)


#: torch's own files: a verdict reached through an optimizer or module hook is attributed to the user's line.
_TORCH_FILES = (str(Path(torch.__file__).resolve().parent),)


class NonFiniteError(FloatingPointError):
    """A NaN or infinity appeared in the monitored model (raised when ``raise_on_nonfinite=True``)."""


class Monitor:
    """Watch a torch model while it trains; say which layer went wrong, since when, and what to do.

    Parameters
    ----------
    model : nn.Module
        The model being trained (a ``torch.compile``'d one is watched at the parameter level only: see
        :data:`COMPILED_NOTE`).
    every : int
        Monitor steps 0, every, 2 every, ...
    optimizer : torch.optim.Optimizer, optional
        Given, each ``optimizer.step()`` ends a step (no ``monitor.step()`` calls), and its learning rate is quoted
        when a verdict follows a rise.
    thresholds : Thresholds, optional
        Where the verdicts start, as in :func:`preflight.torch.propagation`.
    max_update_ratio, patience
        As in :class:`preflight.propagation.Timeline`.
    warn : bool
        Issue a :class:`preflight.propagation.HealthWarning` once per new verdict.
    watch_nonfinite : bool
        Check the output for NaN and infinity at every step (one reduction and one transfer to the host).
    raise_on_nonfinite : bool
        Raise :class:`NonFiniteError` from the forward pass where a NaN or infinity first appears.
    tensorboard : str, path or SummaryWriter, optional
        Also write each monitored step's figures and each verdict there (a path needs the tensorboard package).
    on_record : callable, optional
        Called as ``on_record(step, rows, new_verdicts)`` after each monitored step.

    Examples
    --------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    >>> x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    >>> with Monitor(model, every=10, optimizer=optimizer) as monitor:
    ...     for _ in range(50):
    ...         optimizer.zero_grad()
    ...         torch.nn.functional.cross_entropy(model(x), y).backward()
    ...         optimizer.step()
    >>> monitor
    Monitor(Sequential, every 10, 50 steps, 2 layers: healthy)
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = 50,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        thresholds: Thresholds | None = None,
        max_update_ratio: float = MAX_UPDATE_RATIO,
        patience: int = 2,
        warn: bool = True,
        watch_nonfinite: bool = True,
        raise_on_nonfinite: bool = False,
        tensorboard: Any = None,
        on_record: Listener | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected a torch.nn.Module, got {describe(model)}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer: expected a torch.optim.Optimizer or None, got {describe(optimizer)}")
        if on_record is not None and not callable(on_record):
            raise ValueError(
                f"on_record: expected a callable on_record(step, rows, verdicts), got {describe(on_record)}"
            )
        self.model = model
        self.every = check_positive_int(every, name="every")
        self.optimizer = optimizer
        self.timeline = Timeline(thresholds, max_update_ratio=max_update_ratio, patience=patience)
        self.warn = warn
        self.watch_nonfinite = watch_nonfinite
        self.raise_on_nonfinite = raise_on_nonfinite
        original = getattr(model, "_orig_mod", None)
        self.compiled = isinstance(original, nn.Module)
        self._eager: nn.Module = original if isinstance(original, nn.Module) else model
        self._layers = [(name, m) for name, m in self._eager.named_modules() if isinstance(m, LAYERS)]
        if not self._layers:
            raise ValueError("model: it has no Linear or Conv layer to monitor")
        self._kinds, _ = following_activations(self._eager)
        self._listeners: list[Listener] = [on_record] if on_record is not None else []
        if tensorboard is not None:
            self._listeners.append(tensorboard_listener(tensorboard))
        self._numbers: dict[str, int] = {name: i for i, (name, _) in enumerate(self._layers, start=1)}
        self._step = 0
        self._handles: list[Any] = []
        self._recorder: StepRecorder | None = None
        self._replaying = False
        self._peak_lr = -math.inf
        self._loss: float | None = None
        if self.compiled:
            issue_warning(f"Monitor: {COMPILED_NOTE}", UserWarning)

    # ---------------------------------------------------------------- lifecycle
    @property
    def running(self) -> bool:
        """Whether the hooks are on (between :meth:`start` and :meth:`stop`)."""
        return bool(self._handles)

    @property
    def steps(self) -> int:
        """Steps ended so far."""
        return self._step

    def start(self) -> Monitor:
        """Put the hooks on the model (and the optimizer); returns the monitor. Started twice is a RuntimeError."""
        if self.running:
            raise RuntimeError("Monitor.start: already running; stop() it first (or use it once as a context manager)")
        self._handles = [
            self.model.register_forward_pre_hook(self._before_forward),
            self.model.register_forward_hook(self._after_forward, with_kwargs=True),
        ]
        if self.optimizer is not None:
            self._handles += [
                self.optimizer.register_step_pre_hook(lambda *_: self._before_update()),
                self.optimizer.register_step_post_hook(lambda *_: self._end_step()),
            ]
        self._arm()
        return self

    def stop(self) -> None:
        """Take every hook off (a monitored step not ended by then is dropped). Safe to call twice."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._recorder is not None:
            self._recorder.disarm()
            self._recorder = None

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def step(self, loss: Any = None) -> None:
        """End the current step: call it after ``optimizer.step()`` (not when the optimizer was given: its step
        ends the step). ``loss``, optional, goes to :meth:`observe_loss` first."""
        if self.optimizer is not None:
            raise RuntimeError(
                "Monitor.step: the optimizer given to the Monitor ends each step by itself; call step() only "
                "without optimizer= (observe_loss(loss) records a loss)"
            )
        if loss is not None:
            self.observe_loss(loss)
        self._end_step()

    def observe_loss(self, loss: Any) -> None:
        """Keep the current step's loss (a number or a scalar tensor; one transfer to the host) in the history, and
        check it for NaN and infinity (a non-finite loss from a finite output points at the loss itself)."""
        value = float(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        self._loss = value
        if not math.isfinite(value) and self.watch_nonfinite and self.running:
            self._nonfinite("the loss", ())

    # ---------------------------------------------------------------- hooks
    def _monitored(self) -> bool:
        return self._step % self.every == 0

    def _arm(self) -> None:
        if self.running and self._monitored() and self._recorder is None:
            self._recorder = StepRecorder(
                self._layers,
                self._kinds,
                self.timeline.thresholds.saturation_level,
                forward=not self.compiled,
                snapshot_on_begin=self.optimizer is None,
            )
            self._recorder.arm()

    def _before_forward(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._recorder is not None and not self._replaying and torch.is_grad_enabled():
            self._recorder.begin(args)

    def _after_forward(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
        if self._replaying or not self.watch_nonfinite or self.timeline.nonfinite is not None:
            return
        if all_finite(output):
            return
        self._replaying = True
        if self._recorder is not None:
            self._recorder.paused = True
        try:
            where, layers = locate_nonfinite(self._eager, args, kwargs, self._layer_numbers())
        finally:
            self._replaying = False
            if self._recorder is not None:
                self._recorder.paused = False
        self._nonfinite(where, layers)

    def _nonfinite(self, where: str, layers: tuple[int, ...]) -> None:
        verdict = self.timeline.record_nonfinite(self._step, where, layers)
        if verdict is None:
            return
        self._announce([verdict])
        for listener in self._listeners:
            listener(self._step, [], [verdict])
        if self.raise_on_nonfinite:
            raise NonFiniteError(f"{verdict.message}; fix: {verdict.fix}")

    def _layer_numbers(self) -> dict[str, int]:
        """Layers by execution order once a monitored step has seen it (registration order before)."""
        seen = [row["name"] for row in self.timeline.history.rows() if row["step"] == self.timeline.history.steps[0]]
        return {name: i for i, name in enumerate(seen, start=1)} if seen else self._numbers

    def _before_update(self) -> None:
        if self._recorder is not None:
            self._recorder.snapshot()

    def _end_step(self) -> None:
        if self.optimizer is not None:
            rates = [float(group["lr"]) for group in self.optimizer.param_groups if "lr" in group]
            self._peak_lr = max([self._peak_lr, *rates])
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.disarm()
            if recorder.began or self.compiled:
                self._record(recorder)
        self._loss = None
        self._step += 1
        self._arm()

    def _record(self, recorder: StepRecorder) -> None:
        rows = recorder.rows()
        if not rows:
            return
        history = self.timeline.history
        if self._loss is not None:
            history.losses[self._step] = self._loss
        if self._peak_lr > -math.inf:
            history.learning_rates[self._step] = self._peak_lr
            self._peak_lr = -math.inf
        new = self.timeline.observe(self._step, rows)
        self._announce(new)
        for listener in self._listeners:
            listener(self._step, rows, new)
        bad = next((row for row in rows if row["nonfinite"]), None)
        if bad is not None and self.watch_nonfinite:
            # The output hook missed it (the model's own forward was not called, or the value is in a gradient).
            self._nonfinite(f"layer {bad['layer']} ({bad['name']}) activations or gradients", (bad["layer"],))

    def _announce(self, verdicts: list[HealthVerdict]) -> None:
        if self.warn:
            for verdict in verdicts:
                issue_warning(f"{verdict.message}; fix: {verdict.fix}", HealthWarning, skip=_TORCH_FILES)

    # ---------------------------------------------------------------- results
    @property
    def verdicts(self) -> list[HealthVerdict]:
        """The verdicts so far (grouped over layers, most severe first)."""
        return self.timeline.verdicts()

    def report(self) -> HealthReport:
        """The health report so far: verdicts over time, the last monitored step's table, the raw history."""
        notes = [COMPILED_NOTE] if self.compiled else []
        if self._step == 0:
            notes.append("no step has ended: call monitor.step() after optimizer.step(), or give optimizer=")
        return HealthReport.from_timeline(self.timeline, steps=self._step, every=self.every, notes=notes)

    def to_csv(self, path: str | Path | None = None) -> str:
        """The raw history as CSV text, also written to ``path`` when given."""
        return self.timeline.history.to_csv(path)

    def to_frame(self) -> Any:
        """The raw history as a pandas DataFrame (extra ``data``)."""
        return self.timeline.history.to_frame()

    def plot(self, directory: str | Path) -> list[Path]:
        """The report's figures (heat maps of layers x steps, the verdict timeline), written into ``directory``."""
        return self.report().plot(directory)

    def __repr__(self) -> str:
        verdicts = self.verdicts
        state = "healthy" if not verdicts else ", ".join(f"{v.verdict} since step {v.began:,}" for v in verdicts[:3])
        return (
            f"Monitor({type(self._eager).__name__}, every {self.every}, {self._step:,} steps, "
            f"{len(self._layers)} layers: {state})"
        )
