"""propagation: the NumPy diagnostics' per-layer report and verdicts, measured on a torch model with hooks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from preflight.nn import Network  # noqa: E402
from preflight.propagation import PropagationWarning, analyze  # noqa: E402
from preflight.torch import initialize, propagation  # noqa: E402


def deep(act: type[nn.Module], depth: int = 20, width: int = 64, std: float | None = None) -> Any:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    model = nn.Sequential(*layers, nn.Linear(width, 4))
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
            if std is not None:
                nn.init.normal_(m.weight, std=std)
    return model


def test_he_initialized_relu_is_healthy_and_tiny_weights_vanish() -> None:
    x = torch.randn(256, 64)
    model = deep(nn.ReLU)
    initialize(model)
    assert propagation(model, x).verdict == "healthy"
    report = propagation(deep(nn.ReLU, std=0.01), x, warn=False)
    assert report.verdict == "vanishing"
    assert report.recommendation.scheme == "he"


def test_large_tanh_weights_saturate_and_warn() -> None:
    with pytest.warns(PropagationWarning, match="saturated"):
        report = propagation(deep(nn.Tanh, std=1.0), torch.randn(256, 64))
    assert report.verdict == "saturated"
    assert report.recommendation.scheme == "lecun"


def test_the_figures_match_the_numpy_diagnostics_on_the_same_network() -> None:
    rng = np.random.default_rng(0)
    net = Network([16, 32, 32, 4], hidden="tanh", output="softmax")
    params = net.init(0, "lecun")
    X, y = rng.standard_normal((128, 16)), rng.integers(0, 4, 128)
    expected = analyze(net, params, X, y, warn=False)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4)).double()
    with torch.no_grad():
        for layer, k in zip([model[0], model[2], model[4]], [1, 2, 3], strict=True):
            layer.weight.copy_(torch.from_numpy(params[f"W{k}"]))
            layer.bias.copy_(torch.from_numpy(params[f"b{k}"]))
    got = propagation(model, (torch.from_numpy(X), torch.from_numpy(y)), nn.functional.cross_entropy, warn=False)
    assert got.verdict == expected.verdict
    for a, b in zip(got.layers, expected.layers, strict=True):
        assert a.activation == b.activation and a.verdict == b.verdict
        for field in ("std", "pre_rms", "delta_norm", "weight_grad_norm", "sigma_w2", "predicted_rms"):
            # Same float64 computation in two libraries: equal to rounding.
            assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-9), field
        if b.chi_measured is not None:
            assert a.chi_measured == pytest.approx(b.chi_measured, rel=1e-9)
            assert a.chi_predicted == pytest.approx(b.chi_predicted, rel=1e-9)


def test_the_model_is_left_untouched() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 2)).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    propagation(model, torch.randn(32, 8), warn=False)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.training and all(p.grad is None for p in model.parameters())


def test_bad_arguments_are_rejected_with_their_name() -> None:
    with pytest.raises(ValueError, match="batch"):
        propagation(deep(nn.ReLU, depth=1), [1, 2, 3])
    with pytest.raises(ValueError, match="learning_rate"):
        propagation(deep(nn.ReLU, depth=1), torch.randn(4, 64), learning_rate=-1.0)


def test_a_loss_that_is_not_a_scalar_is_rejected_as_check_module_does() -> None:
    from preflight.torch import check_module

    model, data = deep(nn.Tanh, depth=1), (torch.randn(16, 64), torch.randint(0, 4, (16,)))
    message = r"loss_fn: expected a scalar tensor .*got tensor of shape \(16, 4\)"
    with pytest.raises(ValueError, match=message):
        propagation(model, data, lambda out, y: out, warn=False)
    with pytest.raises(ValueError, match=message):
        check_module(model, lambda out, y: out, data)


def test_tied_weights_and_a_layer_used_twice_are_diagnosed_without_touching_the_model() -> None:
    torch.manual_seed(0)
    tied = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16))
    tied[2].weight = tied[0].weight
    report = propagation(tied, torch.randn(64, 16), warn=False)
    # One tensor, two uses: both layers show its gradient, the sum over both uses.
    assert report.layers[0].weight_grad_norm == report.layers[1].weight_grad_norm
    layer = nn.Linear(16, 16)
    weight = layer.weight
    twice = nn.Sequential(layer, nn.Tanh(), layer)
    assert len(propagation(twice, torch.randn(64, 16), warn=False).layers) == 2
    assert layer.weight is weight and weight.requires_grad
