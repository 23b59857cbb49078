"""check_module: every parameter of a real nn.Module against autograd, through the NumPy checker's engine."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from preflight.check.engine import NondeterministicLossError  # noqa: E402
from preflight.torch import check_module  # noqa: E402

from .test_package import run_without_optional  # noqa: E402

cross_entropy = nn.functional.cross_entropy


def mlp(dtype: Any = torch.float64, act: type[nn.Module] = nn.Tanh, sizes: tuple[int, ...] = (6, 8, 5, 3)) -> Any:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), act()]
    return nn.Sequential(*layers[:-1]).to(dtype)


def batch(dtype: Any = torch.float64, m: int = 7, n: int = 6, classes: int = 3) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(m, n, dtype=dtype, generator=generator), torch.randint(0, classes, (m,), generator=generator)


class ScaledGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``factor`` (a planted bug when factor != 1)."""

    @staticmethod
    def forward(x: Any, factor: float) -> Any:
        return x.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        ctx.factor = inputs[1]

    @staticmethod
    def backward(ctx: Any, g: Any) -> Any:
        return ctx.factor * g, None


class BuggyLinear(nn.Linear):
    """A Linear whose weight gradient is off by ``factor`` (the bug sits in a custom Function on the weight)."""

    def __init__(self, n_in: int, n_out: int, factor: float) -> None:
        super().__init__(n_in, n_out)
        self.factor = factor

    def forward(self, x: Any) -> Any:
        return nn.functional.linear(x, ScaledGrad.apply(self.weight, self.factor), self.bias)


class TwoInputs(nn.Module):
    """Not an nn.Sequential: two inputs, a skip connection (the graph strategy, not the chain)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 5), nn.Linear(6, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x: Any, z: Any) -> Any:
        return self.head(torch.tanh(self.a(x)) + self.b(z))


@pytest.mark.parametrize("strategy", ["auto", "chain", "vmap", "loop"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_correct_model_passes_with_every_strategy(strategy: str, dtype: Any) -> None:
    report = check_module(mlp(dtype), cross_entropy, batch(dtype), strategy=strategy)
    assert report.passed, str(report)
    assert set(report.parameters) == {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"}
    assert sum(r.checked for r in report.parameters.values()) == 6 * 8 + 8 + 8 * 5 + 5 + 5 * 3 + 3
    expected = "chain" if strategy == "auto" else strategy
    assert any(n.startswith(f"strategy: {expected}") for n in report.notes)


@pytest.mark.parametrize("act", [nn.ReLU, nn.Sigmoid, nn.GELU, nn.LeakyReLU])
def test_the_chain_strategy_agrees_with_the_loop_for_each_activation(act: type[nn.Module]) -> None:
    model, data = mlp(act=act), batch()
    chain = check_module(model, cross_entropy, data, strategy="chain")
    loop = check_module(model, cross_entropy, data, strategy="loop")
    assert chain.passed and loop.passed
    for name, result in chain.parameters.items():
        # Both are central differences of the same loss; they differ by rounding only (float64 noise / h ~ 1e-10).
        assert abs(result.difference - loop.parameters[name].difference) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("strategy", ["auto", "vmap"])
def test_a_planted_factor_in_one_weight_gradient_is_named(dtype: Any, strategy: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), BuggyLinear(8, 5, 2.0), nn.Tanh(), nn.Linear(5, 3)).to(dtype)
    report = check_module(model, cross_entropy, batch(dtype), strategy=strategy)
    assert not report.passed
    assert report.worst == "2.weight"
    assert [n for n, r in report.parameters.items() if not r.passed] == ["2.weight"]
    assert any("2.weight" in h and "2.00" in h for h in report.hints), report.hints


def test_a_model_with_two_inputs_is_checked_through_the_graph() -> None:
    model = TwoInputs().double()
    x, y = batch()
    z = torch.randn(7, 6, dtype=torch.float64)
    report = check_module(model, cross_entropy, ((x, z), y))
    assert report.passed
    assert any(n.startswith("strategy: graph") for n in report.notes)
    vmapped = check_module(model, cross_entropy, ((x, z), y), strategy="vmap")
    assert vmapped.passed and any(n.startswith("strategy: vmap") for n in vmapped.notes)


def test_the_callers_model_is_left_as_it_was() -> None:
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Dropout(0.3), nn.Linear(5, 3)).double()
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    check_module(model, cross_entropy, batch(), mode="eval")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_dropout_in_training_mode_stops_the_check_and_says_how_to_freeze_it() -> None:
    model = nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.5), nn.Linear(5, 3)).double().train()
    with pytest.raises(NondeterministicLossError, match=r"dropout is active.*mode='eval'"):
        check_module(model, cross_entropy, batch())
    report = check_module(model, cross_entropy, batch(), mode="eval")
    assert report.passed and any("dropout in eval mode" in n for n in report.notes)


def test_batch_norm_in_training_mode_is_checked_with_batch_statistics() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).double().train()
    running = model[1].running_mean.clone()
    report = check_module(model, cross_entropy, batch())
    assert report.passed, str(report)
    assert any("batch statistics" in n for n in report.notes)
    # BN updates its running stats in place, which vmap refuses: the loop did the work, and only it is named.
    assert [n for n in report.notes if n.startswith("strategy:")] == [report.notes[0]]
    assert report.notes[0].startswith("strategy: loop") and "vmap failed on this model" in report.notes[0]
    assert torch.equal(model[1].running_mean, running)
    assert check_module(model, cross_entropy, batch(), mode="eval").passed


def test_frozen_parameters_are_reported_not_checked() -> None:
    model = mlp()
    model[0].weight.requires_grad_(False)
    report = check_module(model, cross_entropy, batch())
    assert "0.weight" not in report.parameters
    assert any("frozen" in n and "0.weight" in n for n in report.notes)


def test_the_screen_costs_the_same_number_of_evaluations_whatever_the_width() -> None:
    counts = []
    for width in (8, 64):
        model = mlp(sizes=(6, width, width, 3))
        report = check_module(model, cross_entropy, batch(), screen=3)
        assert report.passed and sum(r.checked for r in report.parameters.values()) == 0
        counts.append(report.evaluations)
    assert counts[0] == counts[1]


def test_the_screen_zooms_in_on_the_broken_tensor() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), BuggyLinear(8, 5, -1.0), nn.Tanh(), nn.Linear(5, 3)).double()
    report = check_module(model, cross_entropy, batch(), screen=3)
    assert not report.passed and report.worst == "2.weight"
    assert report.parameters["0.weight"].checked == 0


def test_a_model_that_returns_its_loss_needs_no_loss_fn() -> None:
    model, (x, _) = mlp(), batch()
    report = check_module(nn.Sequential(model, nn.Flatten(0), nn.Softplus()).double(), lambda out: out.sum(), x)
    assert report.passed


def test_bad_arguments_are_rejected_with_their_name() -> None:
    with pytest.raises(ValueError, match="mode"):
        check_module(mlp(), cross_entropy, batch(), mode="inference")
    with pytest.raises(ValueError, match="batch"):
        check_module(mlp(), cross_entropy, [1, 2, 3])
    with pytest.raises(ValueError, match="parameters"):
        check_module(mlp(), cross_entropy, batch(), parameters=["nope"])
    with pytest.raises(ValueError, match="loss_fn"):
        check_module(mlp(), lambda out, y: out, batch())
    with pytest.raises(ValueError, match="model"):
        check_module(lambda x: x, cross_entropy, batch())


def test_the_core_does_not_import_torch_and_the_adapter_names_its_extra() -> None:
    code = "import sys, preflight, preflight.check; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    result = run_without_optional("import preflight.torch")
    assert result.returncode != 0 and "pip install 'nn-preflight[torch]'" in result.stderr


def tied(kind: str, factor: float | None = None) -> Any:
    """A Sequential whose layers share a parameter: a Linear's weight or bias, or an embedding and the output layer.

    With ``factor``, the second user of the tensor is a BuggyLinear (its weight gradient off by that factor).
    """
    torch.manual_seed(0)

    def linear(n_in: int, n_out: int) -> nn.Module:
        return nn.Linear(n_in, n_out) if factor is None else BuggyLinear(n_in, n_out, factor)

    if kind == "embedding":  # a language model's tied input and output embeddings (Press & Wolf 2017)
        model = nn.Sequential(nn.Embedding(6, 4), nn.Tanh(), linear(4, 6)).double()
        model[2].weight = model[0].weight
        return model
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), linear(6, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    setattr(model[2], kind, getattr(model[0], kind))
    return model


def tied_batch(kind: str) -> tuple[Any, Any]:
    if kind != "embedding":
        return batch()
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, 6, (7, 5), generator=generator), torch.randint(0, 6, (7, 5), generator=generator)


def tied_loss(kind: str) -> Any:
    return cross_entropy if kind != "embedding" else lambda out, y: cross_entropy(out.reshape(-1, 6), y.reshape(-1))


@pytest.mark.parametrize("kind", ["weight", "bias", "embedding"])
def test_tied_parameters_pass_and_the_chain_steps_aside_saying_why(kind: str) -> None:
    report = check_module(tied(kind), tied_loss(kind), tied_batch(kind))
    assert report.passed, str(report)
    assert all(not r.kinks and r.checked == r.size for r in report.parameters.values())
    strategy = [n for n in report.notes if n.startswith("strategy:")]
    # the graph takes the model, each tied tensor vmapped through the whole model (it moves two layers at once)
    assert len(strategy) == 1 and strategy[0].startswith("strategy: graph")
    assert "not chain" in strategy[0] and ("2." + ("weight" if kind != "bias" else "bias")) in strategy[0]


@pytest.mark.parametrize("kind", ["weight", "embedding"])
def test_a_planted_bug_in_a_tied_model_still_fails(kind: str) -> None:
    report = check_module(tied(kind, factor=2.0), tied_loss(kind), tied_batch(kind))
    assert not report.passed
    assert report.worst == "0.weight"  # the tied tensor's one name: its gradient sums both uses, one of them wrong


def test_the_chain_strategy_refuses_tied_parameters_by_name() -> None:
    with pytest.raises(ValueError, match=r"strategy: 'chain' cannot check .*0\.weight \(also 2\.weight\)"):
        check_module(tied("weight"), cross_entropy, batch(), strategy="chain")


def test_a_module_used_twice_is_checked_coordinate_by_coordinate_and_left_as_it_was() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(6, 6).double()
    model = nn.Sequential(layer, nn.Tanh(), layer, nn.Tanh(), nn.Linear(6, 3).double())
    weight = layer.weight
    report = check_module(model, cross_entropy, batch())
    assert report.passed and all(not r.kinks and r.checked == r.size for r in report.parameters.values())
    assert report.parameters["0.weight"].checked == 36
    # torch's functional_call(tie_weights=True) restores a module registered twice in the wrong order and leaves the
    # working copy in it; the caller's Parameter must still be there, trainable.
    assert layer.weight is weight and weight.requires_grad and len(list(model.parameters())) == 4


def test_a_parameterless_module_used_twice_keeps_the_chain_exact() -> None:
    torch.manual_seed(0)
    act = nn.Tanh()
    model = nn.Sequential(nn.Linear(6, 5), act, nn.Linear(5, 4), act, nn.Linear(4, 3)).double()
    chain = check_module(model, cross_entropy, batch(), strategy="chain")
    loop = check_module(model, cross_entropy, batch(), strategy="loop")
    assert chain.passed and all(not r.kinks and r.checked == r.size for r in chain.parameters.values())
    for name, result in chain.parameters.items():
        # Both are central differences of the same loss; they differ by rounding only (float64 noise / h ~ 1e-10).
        assert abs(result.difference - loop.parameters[name].difference) < 1e-6


def test_distinct_parameters_that_share_storage_are_independent_tensors_for_every_strategy() -> None:
    # Two Parameter objects over one storage are two leaves to autograd; each strategy perturbs a copy of one.
    model = mlp(sizes=(6, 5, 5, 3))
    model[2].weight = nn.Parameter(model[0].weight.data[:, :5])
    chain = check_module(model, cross_entropy, batch(), strategy="chain")
    loop = check_module(model, cross_entropy, batch(), strategy="loop")
    assert chain.passed and loop.passed
    assert abs(chain.parameters["2.weight"].difference - loop.parameters["2.weight"].difference) < 1e-6


class Residual(nn.Sequential):
    """A Sequential with a forward of its own: not a chain of its children."""

    def forward(self, x: Any) -> Any:
        return x + super().forward(x)


def test_a_sequential_subclass_with_its_own_forward_is_not_taken_for_a_chain() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(Residual(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 6)), nn.Linear(6, 3)).double()
    report = check_module(model[0], lambda out: out.square().sum(), batch()[0])
    assert report.passed, str(report)
    assert report.notes[0].startswith("strategy: graph")  # traced: the residual is one addition in the graph


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_is_rejected_naming_the_dtype_and_the_fix(dtype: Any) -> None:
    model = mlp().to(dtype)
    x, y = batch()
    with pytest.raises(ValueError, match=rf"model \(parameter '0.weight'\): dtype {str(dtype)[6:]} .*float64"):
        check_module(model, cross_entropy, (x.to(dtype), y))


def test_the_dropout_message_leads_with_the_torch_advice() -> None:
    model = nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.5), nn.Linear(5, 3)).double().train()
    with pytest.raises(NondeterministicLossError) as caught:
        check_module(model, cross_entropy, batch())
    message = str(caught.value)
    assert message.index("mode='eval'") < message.index("two calls")
    assert "dropout_masks" not in message and "reference network" not in message


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_short_check_shows_no_progress_bar_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    # 2 x 16,900 perturbed losses: a whole-model call each costs ~1 ms (tens of seconds in all); the chain does them
    # in well under a second, and its own timing is what decides. The threshold is raised to 20 s so that a machine
    # under load (the chain a few times slower) cannot flip the outcome, while a whole-model estimate would still
    # cross it.
    from preflight._util import progress

    monkeypatch.setattr(progress, "PROGRESS_AFTER_S", 20.0)
    model = mlp(sizes=(6, 128, 128, 3))
    report = check_module(model, cross_entropy, batch())
    assert report.passed and report.evaluations > 30_000
    assert "gradcheck" not in terminal.getvalue()


def test_a_check_expected_to_be_long_shows_the_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    from preflight.torch import check

    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(check._TensorEvaluator, "seconds_per_loss", lambda self: 1.0)
    assert check_module(mlp(), cross_entropy, batch()).passed
    assert "gradcheck" in terminal.getvalue()


class MaskedLinear(nn.Linear):
    """A Linear subclass with a forward of its own (a lower-triangular mask on the weight)."""

    def forward(self, x: Any) -> Any:
        return nn.functional.linear(x, self.weight * torch.tril(torch.ones_like(self.weight)), self.bias)


def test_a_linear_subclass_with_its_own_forward_gets_no_rank_one_update() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), MaskedLinear(6, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    report = check_module(model, cross_entropy, batch(), strategy="chain")
    assert report.passed, str(report)
