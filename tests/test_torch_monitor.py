"""preflight.torch.Monitor: each verdict provoked on purpose and found at the right layer near the right step, no false
alarm on a healthy run, the one-point diagnosis' figures exactly, and a model that trains exactly as without it."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from preflight.propagation import HealthWarning, Thresholds  # noqa: E402
from preflight.torch import Monitor, NonFiniteError, propagation  # noqa: E402


def data(n: int = 512, d: int = 20, k: int = 4, seed: int = 0) -> tuple[Any, Any]:
    """A learnable 4-class problem: labels from a noisy linear map of Gaussian inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, k, generator=g)
    return x, (x @ w + 0.5 * torch.randn(n, k, generator=g)).argmax(1)


def mlp(act: type[nn.Module], depth: int = 5, width: int = 64, std: float | None = None, seed: int = 0) -> Any:
    """``depth`` hidden layers; He (ReLU) or LeCun (others) weights unless ``std`` (times 1/sqrt(fan_in)) is given."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    n = 20
    for _ in range(depth):
        layers += [nn.Linear(n, width), act()]
        n = width
    model = nn.Sequential(*layers, nn.Linear(n, 4))
    for m in model:
        if isinstance(m, nn.Linear):
            gain = 2.0 if act is nn.ReLU else 1.0
            scale = std if std is not None else math.sqrt(gain)
            nn.init.normal_(m.weight, std=scale / math.sqrt(m.in_features))
            nn.init.zeros_(m.bias)
    return model


def train(
    model: Any,
    steps: int,
    *,
    lr: float = 0.05,
    every: int = 10,
    batch: int = 128,
    schedule: Callable[[int, Any], None] | None = None,
    event: Callable[[int, Any], None] | None = None,
    stop_at_nonfinite: bool = False,
    optimizer: str = "sgd",
    **options: Any,
) -> tuple[Monitor, int]:
    """Mini-batch training with one parameter group per Linear layer; returns the monitor and the last step run."""
    x, y = data()
    groups = [{"params": list(m.parameters()), "lr": lr} for m in model if isinstance(m, nn.Linear)]
    opt = torch.optim.SGD(groups, lr=lr) if optimizer == "sgd" else torch.optim.Adam(groups, lr=lr)
    g = torch.Generator().manual_seed(1)
    monitor = Monitor(model, every=every, optimizer=opt, warn=False, **options)
    step = 0
    with monitor:
        for step in range(steps):
            if schedule is not None:
                schedule(step, opt)
            if event is not None:
                event(step, model)
            rows = torch.randint(0, x.shape[0], (batch,), generator=g)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
            if stop_at_nonfinite and not torch.isfinite(loss):
                break
            loss.backward()
            opt.step()
    return monitor, step


# ---------------------------------------------------------------------- the same figures as the one-point diagnosis


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, nn.Sigmoid], ids=["relu", "tanh", "sigmoid"])
def test_a_monitored_step_has_the_one_point_diagnosis_figures_and_verdicts(act: type[nn.Module]) -> None:
    model = mlp(act, depth=6, width=32).double()
    x, y = torch.randn(128, 20, dtype=torch.float64), torch.randint(0, 4, (128,))
    expected = propagation(model, (x, y), nn.functional.cross_entropy, warn=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, every=1, optimizer=opt, warn=False) as monitor:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    rows = list(monitor.timeline.history.rows())
    assert [r["layer"] for r in rows] == [s.layer for s in expected.layers]
    for s, row in zip(expected.layers, rows, strict=True):
        assert row["verdict"] == s.verdict
        for key in ("mean", "std", "pre_rms", "saturated_fraction", "dead_fraction", "delta_norm",
                    "activation_grad_norm", "weight_grad_norm", "forward_ratio", "backward_ratio"):  # fmt: skip
            want, got = getattr(s, key), row[key]
            if want is None:
                assert got is None, key
            else:
                # float64 on both sides, summed in different orders: agreement to rounding.
                assert got == pytest.approx(want, rel=1e-10, abs=1e-300), key


def test_a_convolutional_network_is_judged_like_the_one_point_diagnosis_judges_it() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 8 * 8, 4),
    ).double()  # fmt: skip
    x, y = torch.randn(32, 3, 8, 8, dtype=torch.float64), torch.randint(0, 4, (32,))
    expected = propagation(model, (x, y), nn.functional.cross_entropy, warn=False)
    monitor = Monitor(model, every=1, warn=False).start()
    nn.functional.cross_entropy(model(x), y).backward()
    monitor.step()
    monitor.stop()
    rows = list(monitor.timeline.history.rows())
    assert [r["dead_fraction"] for r in rows] == [s.dead_fraction for s in expected.layers]
    assert [r["delta_norm"] for r in rows] == pytest.approx([s.delta_norm for s in expected.layers], rel=1e-10)


# ---------------------------------------------------------------------- each verdict, provoked


def spike_layer_3(step: int, opt: Any) -> None:
    """Steps 300-339: layer 3's learning rate jumps to 2 while the other layers wait (lr 0); 0.05 otherwise. Each big
    step pushes some of its units below zero for every input, where no gradient brings them back."""
    for i, group in enumerate(opt.param_groups):
        group["lr"] = (2.0 if i == 2 else 0.0) if 300 <= step < 340 else 0.05


def test_a_learning_rate_spike_in_layer_3_kills_its_units_and_the_monitor_names_layer_and_step() -> None:
    monitor, _ = train(mlp(nn.ReLU), 400, schedule=spike_layer_3)
    dead = [v for v in monitor.verdicts if v.verdict == "dead"]
    assert len(dead) == 1
    verdict = dead[0]
    assert 3 in verdict.layers and 1 not in verdict.layers
    assert 300 < verdict.began <= 320  # the first monitored steps after the spike
    at_start = {r["layer"]: r["dead_fraction"] for r in monitor.timeline.history.rows() if r["step"] == verdict.began}
    assert max(at_start, key=lambda layer: at_start[layer] or 0.0) == 3
    assert "learning rate rose from 0.05 to 2" in verdict.message
    assert "leaky activation" in verdict.fix and "lower the learning rate" in verdict.fix
    assert all(v.began > 300 for v in monitor.verdicts)  # nothing before the spike


def test_the_same_run_without_the_spike_stays_healthy() -> None:
    monitor, _ = train(mlp(nn.ReLU), 400)
    assert monitor.verdicts == []


def test_tanh_weights_scaled_up_in_layer_3_saturate_it_from_that_step() -> None:
    def scale(step: int, model: Any) -> None:
        if step == 200:
            with torch.no_grad():
                model[4].weight.mul_(10.0)

    monitor, _ = train(mlp(nn.Tanh), 300, every=20, event=scale)
    (verdict,) = monitor.verdicts
    assert (verdict.verdict, verdict.layers, verdict.began) == ("saturated", (3,), 200)
    assert "threshold 30 %" in verdict.message and "init scheme 'lecun'" in verdict.fix


def test_a_deep_tanh_net_with_small_weights_vanishes_where_the_one_point_diagnosis_says() -> None:
    model = mlp(nn.Tanh, depth=12, std=0.5)
    x, y = data()
    first = torch.randint(0, x.shape[0], (128,), generator=torch.Generator().manual_seed(1))  # train's first batch
    expected = propagation(model, (x[first], y[first]), nn.functional.cross_entropy, warn=False)
    monitor, _ = train(model, 60, every=20)
    at_start = [r["verdict"] for r in monitor.timeline.history.rows() if r["step"] == 0]
    assert at_start == [s.verdict for s in expected.layers]
    (verdict,) = monitor.verdicts
    assert verdict.verdict == "vanishing" and verdict.began == 0
    # The layers that stay vanishing over the run (the output layer's weights grow out of it within 20 steps).
    assert set(verdict.layers) <= set(expected.layers_with("vanishing")) and verdict.layers[:10] == tuple(range(1, 11))
    assert "threshold 0.01" in verdict.message and "init scheme 'lecun'" in verdict.fix


def first_nonfinite_linear(model: Any, x: Any) -> int:
    """The oracle: run the Sequential child by child and return the number of the first Linear whose output is not
    finite (1-based, counting Linear layers only)."""
    number = 0
    with torch.no_grad():
        for child in model:
            x = child(x)
            number += isinstance(child, nn.Linear)
            if not torch.isfinite(x).all():
                return number
    raise AssertionError("the forward pass is finite")


def test_an_exploding_run_stopped_at_its_first_nan_is_named_at_that_step_and_layer() -> None:
    model = mlp(nn.ReLU)
    x, _ = data()
    monitor, stopped = train(model, 100, lr=1.0, every=50, stop_at_nonfinite=True)
    assert stopped < 99  # it did diverge
    (verdict,) = [v for v in monitor.verdicts if v.verdict == "nonfinite"]
    assert verdict.began == stopped
    g = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, x.shape[0], (128,), generator=g) for _ in range(stopped + 1)]
    assert verdict.layers == (first_nonfinite_linear(model, x[batches[-1]]),)
    assert f"at step {stopped}" in verdict.message


def test_raise_on_nonfinite_stops_the_forward_pass_where_a_planted_inf_appears() -> None:
    def plant(step: int, model: Any) -> None:
        if step == 37:
            with torch.no_grad():
                model[6].weight[0, 0] = math.inf

    with pytest.raises(NonFiniteError, match=r"layer 4 \(6: Linear\) parameters \(weight\) at step 37"):
        train(mlp(nn.ReLU), 100, every=50, event=plant, raise_on_nonfinite=True)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_healthy_network_gets_no_verdict_over_2000_steps(optimizer: str) -> None:
    model = mlp(nn.ReLU, depth=4, width=32)
    monitor, _ = train(model, 2000, lr=0.05 if optimizer == "sgd" else 1e-3, every=50, batch=64, optimizer=optimizer)
    assert monitor.verdicts == []
    assert len(monitor.timeline.history.steps) == 40
    assert str(monitor.report()).count("no verdict") == 1


def test_large_updates_are_a_verdict_of_their_own_with_their_growth() -> None:
    def grow(step: int, opt: Any) -> None:
        for group in opt.param_groups:
            group["lr"] = 0.05 * 10 ** (step / 100)  # 10x per 100 steps

    monitor, _ = train(mlp(nn.Tanh), 260, every=10, schedule=grow, max_update_ratio=0.02)
    large = [v for v in monitor.verdicts if v.verdict == "large_updates"]
    assert large and "rule of thumb ~0.001" in large[0].message and "growing" in large[0].message


# ---------------------------------------------------------------------- the model trains exactly as without it


def regularized_net() -> Any:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 32), nn.Tanh(),
        nn.Linear(32, 4),
    )  # fmt: skip


def run_and_keep(monitored: bool) -> list[Any]:
    model = regularized_net()
    x, y = data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    kept = []
    torch.manual_seed(7)  # dropout draws from the global generator: the monitor must not draw from it
    monitor = Monitor(model, every=2, optimizer=opt, warn=False) if monitored else None
    if monitor is not None:
        monitor.start()
    for step in range(8):
        opt.zero_grad()
        out = model(x[step * 32 : (step + 1) * 32])
        nn.functional.cross_entropy(out, y[step * 32 : (step + 1) * 32]).backward()
        kept.append([out.detach().clone(), *[p.grad.clone() for p in model.parameters()]])
        opt.step()
    kept.append([p.detach().clone() for p in model.parameters()] + [b.clone() for b in model.buffers()])
    if monitor is not None:
        monitor.stop()
        assert len(monitor.timeline.history.steps) == 4
    return kept


def test_outputs_gradients_and_weights_are_bit_identical_with_and_without_the_monitor() -> None:
    plain, watched = run_and_keep(False), run_and_keep(True)
    for a, b in zip(plain, watched, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def hooks_left(model: Any, opt: Any) -> int:
    count = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    count += sum(len(p._post_accumulate_grad_hooks or {}) for p in model.parameters())
    return count + len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)


def test_hooks_are_removed_on_exit_also_when_the_loop_raises() -> None:
    model = mlp(nn.ReLU, depth=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    with pytest.raises(KeyError, match="boom"), Monitor(model, every=1, optimizer=opt, warn=False) as monitor:
        assert hooks_left(model, opt) > 0
        nn.functional.cross_entropy(model(x[:16]), y[:16]).backward()  # a monitored step, half done
        raise KeyError("boom")
    assert hooks_left(model, opt) == 0 and not monitor.running
    before = len(monitor.timeline.history)
    nn.functional.cross_entropy(model(x[:16]), y[:16]).backward()
    opt.step()
    assert len(monitor.timeline.history) == before and monitor.steps == 0


# ---------------------------------------------------------------------- the loop's forms


def test_without_an_optimizer_step_ends_a_step_and_keeps_the_loss() -> None:
    model = mlp(nn.ReLU, depth=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    with Monitor(model, every=2, warn=False) as monitor:
        for _ in range(5):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[:64]), y[:64])
            loss.backward()
            opt.step()
            monitor.step(loss)
    history = monitor.timeline.history
    assert history.steps == [0, 2, 4] and sorted(history.losses) == [0, 2, 4]
    assert all(r["update_ratio"] is not None and r["update_ratio"] > 0 for r in history.rows())


def test_gradient_accumulation_records_the_first_micro_batch_and_the_whole_update() -> None:
    model = mlp(nn.ReLU, depth=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data()
    with Monitor(model, every=1, optimizer=opt, warn=False) as monitor:
        opt.zero_grad()
        for part in range(3):
            nn.functional.cross_entropy(
                model(x[part * 16 : (part + 1) * 16]), y[part * 16 : (part + 1) * 16]
            ).backward()
        opt.step()
    rows = list(monitor.timeline.history.rows())
    assert len(rows) == 3 and monitor.steps == 1
    assert rows[0]["weight_grad_norm"] == pytest.approx(float(model[0].weight.grad.norm()), rel=1e-6)


def test_half_precision_a_shared_layer_keyword_inputs_and_tuple_outputs_are_watched() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Linear(16, 16)
            self.head = nn.Linear(16, 4)

        def forward(self, x: Any) -> Any:
            h = torch.relu(self.shared(torch.relu(self.shared(x))))  # one layer, used twice
            return self.head(h), {"hidden": h}

    torch.manual_seed(0)
    model = Twice().to(torch.bfloat16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 16, dtype=torch.bfloat16), torch.randint(0, 4, (64,))
    with Monitor(model, every=1, optimizer=opt, warn=False) as monitor:
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x=x)[0].float(), y).backward()  # a keyword argument only
            opt.step()
    rows = list(monitor.timeline.history.rows())
    assert [r["name"] for r in rows[:2]] == ["shared", "head"] and len(rows) == 6
    assert all(r["verdict"] != "nonfinite" and 0 < r["update_ratio"] < 1 and r["std"] > 0 for r in rows)
    assert all(r["forward_ratio"] is not None for r in rows)  # the input's rms from the first layer's input


def test_the_step_method_refuses_to_double_count_when_the_optimizer_ends_steps() -> None:
    model = mlp(nn.ReLU, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Monitor(model, optimizer=opt, warn=False) as monitor, pytest.raises(RuntimeError, match="optimizer"):
        monitor.step()


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        (("model",), "model: expected a torch.nn.Module"),
        ((nn.ReLU(),), "no Linear or Conv layer"),
        ((nn.Linear(2, 2), 0), "every: expected an integer >= 1"),
    ],
)
def test_bad_arguments_are_named(arguments: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Monitor(*arguments)


def test_a_bad_optimizer_or_writer_is_named_and_starting_twice_is_refused() -> None:
    with pytest.raises(ValueError, match=r"optimizer: expected a torch\.optim\.Optimizer"):
        Monitor(nn.Linear(2, 2), optimizer="adam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tensorboard: expected a log directory or a SummaryWriter"):
        Monitor(nn.Linear(2, 2), tensorboard=3)
    monitor = Monitor(nn.Linear(2, 2)).start()
    with pytest.raises(RuntimeError, match="already running"):
        monitor.start()
    monitor.stop()
    monitor.stop()


def test_verdicts_warn_once_each_with_their_fix() -> None:
    model = mlp(nn.Tanh, depth=12, std=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    with warnings.catch_warnings(record=True) as caught, Monitor(model, every=20, optimizer=opt):
        warnings.simplefilter("always")
        for _ in range(60):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[:128]), y[:128]).backward()
            opt.step()
    messages = [str(w.message) for w in caught if issubclass(w.category, HealthWarning)]
    assert len(messages) == 1 and "vanishing signal in layers" in messages[0] and "fix: try init scheme" in messages[0]
    assert [w.filename for w in caught] == [__file__]  # the user's line: opt.step() above


# ---------------------------------------------------------------------- report, history, figures, TensorBoard


def test_the_report_in_every_form(tmp_path: Any) -> None:
    monitor, _ = train(mlp(nn.Tanh), 80, every=20, event=lambda s, m: s == 40 and m[4].weight.data.mul_(10.0))
    report = monitor.report()
    text = str(report)
    assert "At the last monitored step (60)" in text and "saturated signal in layer 3 (4) of 6 since step 40" in text
    assert "\n" not in repr(report) and "saturated in layers [3] since step 40" in repr(report)
    assert json.loads(report.to_json())["verdicts"][0]["layers"] == [3]
    assert "<table>" in report._repr_html_() and "&" not in report._repr_html_().replace("&#x27;", "")
    assert report.to_dict()["thresholds"] == Thresholds().__dict__
    csv = monitor.to_csv(tmp_path / "history.csv")
    assert (tmp_path / "history.csv").read_text() == csv and len(csv.splitlines()) == 1 + 4 * 6
    frame = monitor.to_frame()
    assert frame.shape[0] == 24 and set(frame["verdict"]) == {"healthy", "saturated"}
    assert all(
        isinstance(v, (int, float, str, bool, type(None))) for row in report.history.rows() for v in row.values()
    )
    pytest.importorskip("matplotlib")
    paths = monitor.plot(tmp_path)
    assert [p.name for p in paths] == ["health_heatmaps.png", "health_timeline.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


class FakeWriter:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []
        self.texts: list[tuple[str, str, int]] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def add_text(self, tag: str, text: str, step: int) -> None:
        self.texts.append((tag, text, step))


def test_a_tensorboard_writer_gets_each_layer_s_figures_and_each_verdict(tmp_path: Any) -> None:
    writer = FakeWriter()
    train(mlp(nn.Tanh, depth=12, std=0.5), 40, every=20, tensorboard=writer)
    assert {step for _, _, step in writer.scalars} == {0, 20}
    assert "preflight/std/layer 01 (0)" in {tag for tag, _, _ in writer.scalars}
    assert len(writer.texts) == 1 and "vanishing" in writer.texts[0][1]
    pytest.importorskip("tensorboard")
    train(mlp(nn.ReLU, depth=1), 3, every=1, tensorboard=tmp_path / "runs")
    assert list((tmp_path / "runs").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_a_compiled_model_is_watched_at_the_parameter_level_and_says_so() -> None:
    model = mlp(nn.ReLU, depth=3)
    compiled = torch.compile(model, backend="eager")
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = data()
    with pytest.warns(UserWarning, match="compiled code skips forward hooks"):
        monitor = Monitor(compiled, every=2, optimizer=opt, warn=False)
    with monitor:
        for step in range(6):
            if step == 5:
                with torch.no_grad():
                    model[4].weight[0, 0] = math.nan
            opt.zero_grad()
            loss = nn.functional.cross_entropy(compiled(x[:64]), y[:64])
            if step < 5:
                loss.backward()
                opt.step()
    rows = list(monitor.timeline.history.rows())
    assert {r["verdict"] for r in rows} == {"n/a"} and all(r["update_ratio"] > 0 for r in rows)
    assert all(r["weight_grad_norm"] > 0 and r["std"] is None for r in rows)
    assert "layer 3 (4: Linear) parameters (weight) at step 5" in monitor.verdicts[0].message
    assert "torch.compile" in str(monitor.report())


def test_the_monitor_guide_prints_what_it_says() -> None:
    import contextlib
    import io
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "guides" / "monitor.md"
    section = page.read_text(encoding="utf-8")
    code, after = re.search(r"```python\n(.*?)```\n(.*?)(?=\n\n|\Z)", section, re.S).groups()  # type: ignore[union-attr]
    expected = re.search(r"prints `([^`]+)`, then `([^`]+)`", after.replace("\n", " ")).groups()  # type: ignore[union-attr]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, str(page), "exec"), {"__name__": "monitor_guide"})
    assert out.getvalue().splitlines() == list(expected)
