"""The chain evaluator's shortcuts (tanh by its Taylor series between two Linear layers, the cross-entropy's change
in closed form) against plain forward calls, tensor by tensor, at the steps a check uses and far larger ones."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from preflight.torch import check_module  # noqa: E402
from preflight.torch._evaluators import ChainEvaluator, class_targets  # noqa: E402

cross_entropy = nn.functional.cross_entropy
#: Steps: a central difference's at float64 (cbrt(eps) ~ 6e-6), float32's (~5e-3), and one past every shortcut's
#: bound, where the exact path must take over.
STEPS = (6e-6, 5e-3, 0.3)


def mlp(sizes: tuple[int, ...] = (6, 12, 9, 4), dtype: Any = torch.float64) -> Any:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).to(dtype)


def data(shape: tuple[int, ...] = (7, 6), classes: int = 4, dtype: Any = torch.float64) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, dtype=dtype, generator=generator)
    return x, torch.randint(0, classes, shape[:1], generator=generator)


def plain_losses(model: Any, loss: Any, x: Any, name: str, coords: Any, deltas: Any) -> Any:
    """One ordinary forward call per perturbation, the parameter moved in place and restored."""
    param = dict(model.named_parameters())[name].detach().view(-1)
    out = []
    with torch.no_grad():
        for c, d in zip(coords.tolist(), deltas.tolist(), strict=True):
            old = param[c].clone()
            param[c] = old + d
            out.append(float(loss(model(x))))
            param[c] = old
    return torch.tensor(out, dtype=torch.float64)


def spy(evaluator: ChainEvaluator) -> list[bool]:
    """Records, per call of the Taylor step, whether it was taken (True) or handed to the exact path (False)."""
    taken: list[bool] = []
    inner = evaluator._through_tanh

    def recording(*args: Any) -> Any:
        result = inner(*args)
        taken.append(result is not None)
        return result

    evaluator._through_tanh = recording  # type: ignore[method-assign]
    return taken


@pytest.mark.parametrize("closed_form", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_tensor_matches_plain_forward_calls_at_every_step(closed_form: bool, dtype: Any) -> None:
    model, (x, y) = mlp(dtype=dtype), data(dtype=dtype)
    with torch.no_grad():
        f0 = float(cross_entropy(model(x), y))
        evaluator = ChainEvaluator(model, x, lambda out: cross_entropy(out, y), y if closed_form else None)
    taken = spy(evaluator)
    assert (evaluator.target is not None) == closed_form
    generator = torch.Generator().manual_seed(2)
    eps = torch.finfo(dtype).eps
    for name, p in model.named_parameters():
        coords = torch.randperm(p.numel(), generator=generator)[:12]
        for step in STEPS:
            signs = torch.where(torch.rand(len(coords), generator=generator) < 0.5, -1.0, 1.0)
            deltas = (step * signs).to(dtype)
            with torch.no_grad():
                got = evaluator.losses(name, coords, deltas).double()
            expected = plain_losses(model, lambda out: cross_entropy(out, y), x, name, coords, deltas)
            # Both are the loss rounded to the model's dtype after a few dozen operations: a handful of ulps of the
            # loss apart (measured <= 2 ulps on the 1e5-parameter MLP in float64); 8 ulps leaves room for float32's
            # accumulation, far below a gradient error (a central difference divides this by 2h).
            assert float((got - expected).abs().max()) <= 8 * eps * abs(f0), (name, step)
    # The first layer's weight and bias went through the Taylor step at the small steps, and 0.3 through the exact
    # path (its move, ~0.3 * |x| * |w|, is far past the series' bound).
    assert True in taken and False in taken


def test_leading_dimensions_and_another_loss_take_the_taylor_step_exactly() -> None:
    """Inputs of shape (batch, tokens, features) and a loss other than cross-entropy (no closed form)."""
    model, (x, _) = mlp(), data((5, 3, 6))

    def loss(out: Any) -> Any:
        return (out**2).mean() + out.sin().sum()

    with torch.no_grad():
        f0 = float(loss(model(x)))
        evaluator = ChainEvaluator(model, x, loss)
    taken = spy(evaluator)
    for name in ("0.weight", "0.bias"):
        coords = torch.arange(dict(model.named_parameters())[name].numel())
        deltas = torch.full((len(coords),), 6e-6, dtype=torch.float64)
        with torch.no_grad():
            got = evaluator.losses(name, coords, deltas)
        expected = plain_losses(model, loss, x, name, coords, deltas)
        assert float((got - expected).abs().max()) <= 8 * torch.finfo(torch.float64).eps * abs(f0)
    assert taken == [True, True]


def test_a_tanh_mlp_gets_the_loops_verdict_and_numbers() -> None:
    model, batch = mlp(), data()
    chain = check_module(model, cross_entropy, batch, strategy="chain")
    loop = check_module(model, cross_entropy, batch, strategy="loop")
    assert chain.passed and loop.passed
    assert chain.evaluations == loop.evaluations
    for name, result in chain.parameters.items():
        # Central differences of the same loss: they differ by rounding only (float64 noise / h ~ 1e-10).
        assert abs(result.difference - loop.parameters[name].difference) < 1e-6
        assert result.checked == loop.parameters[name].checked == result.size


def test_class_targets_recognizes_only_the_plain_mean_cross_entropy() -> None:
    y = torch.tensor([0, 2, 1])
    assert class_targets(cross_entropy, (y,)) is y
    assert class_targets(nn.CrossEntropyLoss(), (y,)) is y
    assert class_targets(nn.CrossEntropyLoss(ignore_index=2), (y,)) is None  # an ignored row: not a plain mean
    assert class_targets(cross_entropy, (torch.tensor([0, -100, 1]),)) is None
    assert class_targets(nn.CrossEntropyLoss(weight=torch.ones(3)), (y,)) is None
    assert class_targets(nn.CrossEntropyLoss(reduction="sum"), (y,)) is None
    assert class_targets(nn.CrossEntropyLoss(label_smoothing=0.1), (y,)) is None
    assert class_targets(lambda out, t: cross_entropy(out, t), (y,)) is None  # not known to be the plain one
    assert class_targets(cross_entropy, (torch.rand(3, 3),)) is None  # class probabilities
    assert class_targets(cross_entropy, (y, y)) is None
