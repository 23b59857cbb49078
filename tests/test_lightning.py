"""preflight.lightning.HealthCallback: the monitor inside a real Lightning Trainer, logging through its loggers."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from torch import nn  # noqa: E402

from preflight.lightning import HealthCallback  # noqa: E402
from preflight.propagation import HealthWarning  # noqa: E402


class Deep(pl.LightningModule):
    """A 12-layer tanh MLP whose small weights (std 0.5/sqrt(fan_in)) make the signal vanish."""

    def __init__(self, std: float = 0.5, fail_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        layers: list[nn.Module] = []
        for i in range(12):
            layers += [nn.Linear(20 if i == 0 else 32, 32), nn.Tanh()]
        self.net = nn.Sequential(*layers, nn.Linear(32, 4))
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std / math.sqrt(m.in_features))
                nn.init.zeros_(m.bias)
        self.fail_at = fail_at

    def training_step(self, batch: Any, index: int) -> Any:
        if index == self.fail_at:
            raise KeyError("boom")
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)  # the module's own forward is never called

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Collecting(pl.loggers.Logger):
    """A logger that keeps what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "collecting"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((step, dict(metrics)))


def fit(module: pl.LightningModule, callback: HealthCallback, **trainer: Any) -> Collecting:
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(512, 20, generator=g), torch.randint(0, 4, (512,), generator=g))
    logger = Collecting()
    options = dict(max_epochs=1, logger=logger, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, log_every_n_steps=1)  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|LitLogger).*")
        pl.Trainer(callbacks=[callback], **{**options, **trainer}).fit(
            module, torch.utils.data.DataLoader(data, batch_size=32)
        )
    return logger


def test_a_vanishing_network_is_named_logged_and_warned_once() -> None:
    health = HealthCallback(every=4)
    with pytest.warns(HealthWarning, match="vanishing signal in layers 1-") as caught:
        logger = fit(Deep(), health)
    assert len([w for w in caught if issubclass(w.category, HealthWarning)]) == 1
    report = health.report()
    assert report.steps == 16 and [v.verdict for v in report.verdicts] == ["vanishing"]
    logged = [m for _, m in logger.metrics if any(k.startswith("preflight/") for k in m)]
    assert [step for step, m in logger.metrics if "preflight/std/layer 01 (net.0)" in m] == [0, 4, 8, 12]
    assert "preflight/backward_ratio/layer 01 (net.0)" in logged[0]
    assert health.monitor is not None and not health.monitor.running
    assert sorted(report.history.losses) == [0, 4, 8, 12]


def test_gradient_accumulation_counts_optimizer_steps() -> None:
    health = HealthCallback(every=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthWarning)
        fit(Deep(std=1.0), health, accumulate_grad_batches=4)
    assert health.report().steps == 4 and health.report().history.steps == [0, 2]


def test_hooks_come_off_when_training_fails() -> None:
    health = HealthCallback(every=1)
    module = Deep(std=1.0, fail_at=3)
    with pytest.raises(KeyError, match="boom"):
        fit(module, health)
    assert health.monitor is not None and not health.monitor.running
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())
    assert health.report().history.steps == [0, 1, 2]


def test_bad_options_are_named_before_training() -> None:
    with pytest.raises(ValueError, match="every: expected an integer >= 1"):
        HealthCallback(every=0)
    with pytest.raises(ValueError, match="optimizer, on_record and warn are the callback's own"):
        HealthCallback(optimizer=None)
    with pytest.raises(RuntimeError, match="training has not started"):
        HealthCallback().report()
