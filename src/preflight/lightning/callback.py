"""A Lightning callback around :class:`preflight.torch.Monitor`: the same hooks, verdicts and report, its figures
logged through the trainer's loggers and each new verdict warned once.

Written against Lightning's documented ``Callback`` API (``lightning.pytorch.Callback``): the monitor starts in
``on_train_start`` (when the trainer's optimizers exist: each ``optimizer.step()`` then ends a monitored step, so
gradient accumulation counts optimizer steps, not batches), takes the loss in ``on_before_backward``, and stops in
``on_train_end`` or ``on_exception``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch

from preflight.propagation import HealthReport, HealthVerdict, HealthWarning
from preflight.torch import Monitor
from preflight.torch.monitor_writers import scalars

__all__ = ["HealthCallback"]


class HealthCallback(pl.Callback):
    """Watch a Lightning training run layer by layer: ``Trainer(callbacks=[HealthCallback(every=50)])``.

    Parameters
    ----------
    every : int
        Monitor optimizer steps 0, every, 2 every, ...
    log : bool
        Send each monitored step's figures (``preflight/<statistic>/layer NN (name)``) to the trainer's loggers.
    **options
        Passed to :class:`preflight.torch.Monitor` (``thresholds``, ``max_update_ratio``, ``patience``,
        ``watch_nonfinite``, ``raise_on_nonfinite``, ``tensorboard``).

    Attributes
    ----------
    monitor : Monitor or None
        The monitor of the last run (None before training starts).

    Examples
    --------
    >>> import warnings
    >>> class Classifier(pl.LightningModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    ...     def training_step(self, batch, index):
    ...         x, y = batch
    ...         return torch.nn.functional.cross_entropy(self.net(x), y)
    ...     def configure_optimizers(self):
    ...         return torch.optim.SGD(self.parameters(), lr=0.05)
    >>> _ = torch.manual_seed(0)
    >>> data = torch.utils.data.TensorDataset(torch.randn(256, 8), torch.randint(0, 2, (256,)))
    >>> health = HealthCallback(every=8)
    >>> trainer = pl.Trainer(max_epochs=2, callbacks=[health], logger=False, enable_progress_bar=False,
    ...                      enable_model_summary=False, enable_checkpointing=False)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # Lightning's own advice (workers, logging intervals)
    ...     trainer.fit(Classifier(), torch.utils.data.DataLoader(data, batch_size=32))
    >>> health.report()
    HealthReport(16 steps, every 8, 2 layers: healthy)
    """

    def __init__(self, every: int = 50, *, log: bool = True, **options: Any) -> None:
        super().__init__()
        if "optimizer" in options or "on_record" in options or "warn" in options:
            raise ValueError("options: optimizer, on_record and warn are the callback's own; pass the others")
        self.every = every
        self.log = log
        self.options = options
        self.monitor: Monitor | None = None
        self._trainer: pl.Trainer | None = None
        # Check every and the options now rather than when training starts (a log directory is made then only).
        Monitor(torch.nn.Linear(1, 1), every, **{k: v for k, v in options.items() if k != "tensorboard"})

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start a monitor on the module, its steps ended by the trainer's first optimizer."""
        self._trainer = trainer
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        self.monitor = Monitor(
            pl_module, self.every, optimizer=optimizer, warn=False, on_record=self._record, **self.options
        ).start()

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        """Keep the step's loss (and check it for NaN and infinity)."""
        if self.monitor is not None and self.monitor.running:
            self.monitor.observe_loss(loss)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Take the hooks off."""
        if self.monitor is not None:
            self.monitor.stop()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Take the hooks off when training fails (the report keeps what was seen)."""
        if self.monitor is not None:
            self.monitor.stop()

    def report(self) -> HealthReport:
        """The health report of the last run."""
        if self.monitor is None:
            raise RuntimeError("HealthCallback.report: training has not started (trainer.fit with this callback)")
        return self.monitor.report()

    def _record(self, step: int, rows: Sequence[dict[str, Any]], verdicts: Sequence[HealthVerdict]) -> None:
        trainer = self._trainer
        if trainer is None:
            return
        if self.log and rows:
            figures = scalars(rows)
            for logger in trainer.loggers:
                logger.log_metrics(figures, step=step)  # the optimizer steps before this one: trainer.global_step
        for verdict in verdicts:
            pl.utilities.rank_zero_warn(f"{verdict.message}; fix: {verdict.fix}", category=HealthWarning)
