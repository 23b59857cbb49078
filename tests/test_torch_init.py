"""initialize: preflight's schemes on torch layers, "auto" by the activation that follows, and LSUV."""

from __future__ import annotations

import math
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from preflight.init import LSUVWarning  # noqa: E402
from preflight.torch import initialize  # noqa: E402


def mixed() -> Any:
    return nn.Sequential(
        nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 256), nn.Dropout(0.1),
        nn.LeakyReLU(0.2), nn.Linear(256, 4),
    )  # fmt: skip


class Branching(nn.Module):
    """Traceable, with functional activations and a flatten between a conv and its activation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3)
        self.fc = nn.Linear(32 * 6 * 6, 64)
        self.out = nn.Linear(64, 2)

    def forward(self, x: Any) -> Any:
        h = torch.relu(self.conv(x)).flatten(1)
        return self.out(torch.tanh(self.fc(h)))


class Untraceable(nn.Module):
    """Control flow on data: torch.fx cannot trace it; registration order still finds the activations."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.b = nn.Linear(8, 128), nn.ReLU(), nn.Linear(128, 2)

    def forward(self, x: Any) -> Any:
        if x.sum() > 0:
            x = -x
        return self.b(self.act(self.a(x)))


def test_auto_picks_by_the_following_activation_and_says_so() -> None:
    report = initialize(mixed(), rng=0)
    assert [(r.name, r.activation) for r in report.layers] == [
        ("0", "relu"), ("2", "tanh"), ("4", "leaky_relu(0.2)"), ("7", "none"),
    ]  # fmt: skip
    assert [r.scheme.split(" ")[0] for r in report.layers] == ["he", "lecun", "he", "lecun"]
    assert report.traced == "traced with torch.fx"
    assert "followed by" in str(report) and "leaky_relu(0.2)" in str(report)


def test_the_weights_have_the_variance_of_the_chosen_scheme() -> None:
    model = mixed()
    initialize(model, rng=0)
    # std of 65,536 normal draws is within ~0.3 % of the target (standard error 1/sqrt(2n)); 2 % leaves room.
    assert model[2].weight.std().item() == pytest.approx(math.sqrt(1 / 256), rel=0.02)
    assert model[0].weight.std().item() == pytest.approx(math.sqrt(2 / 16), rel=0.05)  # 4,096 draws
    slope = 0.2
    assert model[4].weight.std().item() == pytest.approx(math.sqrt(2 / (1 + slope**2) / 256), rel=0.02)
    assert all(torch.count_nonzero(m.bias) == 0 for m in model if isinstance(m, nn.Linear))


def test_functional_activations_and_conv_layers_are_traced() -> None:
    model = Branching()
    report = initialize(model, rng=1)
    assert [(r.name, r.activation) for r in report.layers] == [("conv", "relu"), ("fc", "tanh"), ("out", "none")]
    # conv fan_in = 3 * 3 * 3 = 27; He: variance 2/27 (9 * 32 * 3 = 864 draws, 6 % is ~2.5 standard errors)
    assert model.conv.weight.std().item() == pytest.approx(math.sqrt(2 / 27), rel=0.06)


def test_an_untraceable_model_falls_back_to_registration_order() -> None:
    report = initialize(Untraceable(), rng=0)
    assert report.traced.startswith("by registration order")
    assert [(r.name, r.activation) for r in report.layers] == [("a", "relu"), ("b", "none")]


@pytest.mark.parametrize("scheme", ["glorot", "orthogonal", "he_uniform"])
def test_a_named_scheme_applies_to_every_layer(scheme: str) -> None:
    model = mixed()
    report = initialize(model, scheme, rng=0)
    assert {r.scheme for r in report.layers} == {scheme}
    if scheme == "orthogonal":
        w = model[2].weight.detach().double()
        assert torch.allclose(w @ w.T, torch.eye(256, dtype=torch.float64), atol=1e-5)  # float32 weights


def test_the_same_seed_gives_the_same_weights() -> None:
    a, b = mixed(), mixed()
    initialize(a, rng=3)
    initialize(b, rng=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_lsuv_brings_every_layer_output_to_unit_variance() -> None:
    torch.manual_seed(0)
    model, x = mixed(), torch.randn(512, 16)
    report = initialize(model, "lsuv", batch=x, tol=0.05)
    assert all(abs(r.variance_after - 1.0) <= 0.05 for r in report.layers), str(report)
    with torch.no_grad():
        model.eval()
        assert model[:3](x).var().item() == pytest.approx(1.0, abs=0.05)
    assert "output var before" in str(report)


def test_lsuv_warns_when_a_layer_output_is_constant() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.warns(LSUVWarning, match="variance 0"):
        initialize(model, "lsuv", batch=torch.zeros(64, 4))


def test_bad_arguments_are_rejected_with_their_name() -> None:
    with pytest.raises(ValueError, match="scheme"):
        initialize(mixed(), "hee")
    with pytest.raises(ValueError, match="batch"):
        initialize(mixed(), "lsuv")
    with pytest.raises(ValueError, match="model"):
        initialize(nn.Sequential(nn.ReLU()))


def frozen_backbone() -> Any:
    model = mixed()
    model[0].requires_grad_(False)  # a "pretrained" first layer, weight and bias
    model[4].bias.requires_grad_(False)
    return model


@pytest.mark.parametrize("scheme", ["auto", "glorot", "lsuv"])
def test_frozen_parameters_are_kept_and_listed(scheme: str) -> None:
    torch.manual_seed(0)
    model, x = frozen_backbone(), torch.randn(256, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = initialize(model, scheme, rng=0, batch=x if scheme == "lsuv" else None)
    after = model.state_dict()
    assert report.skipped == ("0.weight", "0.bias", "4.bias")
    assert all(torch.equal(after[k], before[k]) for k in report.skipped)
    assert all(not torch.equal(after[k], before[k]) for k in ("2.weight", "4.weight"))
    assert [r.scheme for r in report.layers if r.name == "0"] == ["kept (frozen)"]
    assert "0.weight" in str(report) and "include_frozen=True" in str(report)


def test_include_frozen_initializes_frozen_parameters_too() -> None:
    model = frozen_backbone()
    before = model[0].weight.clone()
    report = initialize(model, rng=0, include_frozen=True)
    assert report.skipped == () and not torch.equal(model[0].weight, before)
    assert torch.count_nonzero(model[4].bias) == 0


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (torch.randn(64, 5), r"16 input features in float32, got tensor of shape \(64, 5\)"),
        (torch.randn(64, 16, dtype=torch.float64), "in float32, got tensor of shape .* dtype float64"),
        (torch.zeros(64, 16, dtype=torch.int64), "in float32, got .* dtype int64"),
    ],
)
def test_lsuv_rejects_a_batch_the_model_cannot_take_before_changing_any_weight(x: Any, expected: str) -> None:
    model = mixed().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    message = rf"batch: the model cannot run on it .*first layer '0' \(Linear\).*{expected}"
    with pytest.raises(ValueError, match=message):
        initialize(model, "lsuv", batch=x)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(m.training for m in model.modules())
