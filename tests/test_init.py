"""Initializers: one registry drives every scheme x shape x dtype through the same statistical checks.

Each random initializer's samples must have the target variance (within a few standard errors) and pass a
Kolmogorov-Smirnov test against the target distribution; orthogonal weights must be orthogonal; gains and fans must
match torch.nn.init where torch is installed; bad arguments are rejected when the initializer is built.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from preflight import init

stats = pytest.importorskip("scipy.stats")

#: Dense (n_out, n_in), tall and wide, and conv kernels (out, in, *kernel) in 2-D and 1-D.
SHAPES = [(256, 128), (64, 300), (32, 16, 3, 3), (16, 8, 5)]
DTYPES = [np.float32, np.float64]
SQRT3 = math.sqrt(3.0)


def fan(shape: tuple[int, ...], mode: str) -> float:
    fan_in, fan_out = init.fans(shape)
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


@dataclass(frozen=True)
class Case:
    """An initializer, its distribution family, and its target standard deviation for a given shape."""

    initializer: init.Initializer
    family: str  # normal | uniform | truncated_normal | orthogonal
    std: Callable[[tuple[int, ...]], float]
    mean: float = 0.0


def scaled(scale: float, mode: str) -> Callable[[tuple[int, ...]], float]:
    return lambda shape: math.sqrt(scale / fan(shape, mode))


def orthogonal_std(g: float) -> Callable[[tuple[int, ...]], float]:
    # sum(W^2) = g^2 min(rows, cols) exactly, so the mean square is g^2 / max(rows, cols).
    return lambda shape: g / math.sqrt(max(shape[0], math.prod(shape[1:])))


LEAKY_GAIN2 = 2.0 / (1.0 + 0.2**2)
REGISTRY: dict[str, Case] = {
    "lecun_normal": Case(init.lecun_normal, "normal", scaled(1.0, "fan_in")),
    "lecun_uniform": Case(init.lecun_uniform, "uniform", scaled(1.0, "fan_in")),
    "glorot_normal": Case(init.glorot_normal, "normal", scaled(1.0, "fan_avg")),
    "glorot_uniform": Case(init.glorot_uniform, "uniform", scaled(1.0, "fan_avg")),
    "he_normal": Case(init.he_normal, "normal", scaled(2.0, "fan_in")),
    "he_uniform": Case(init.he_uniform, "uniform", scaled(2.0, "fan_in")),
    "he_fan_out": Case(init.SCHEMES["he_fan_out"], "normal", scaled(2.0, "fan_out")),
    "he_uniform_fan_out": Case(init.SCHEMES["he_uniform_fan_out"], "uniform", scaled(2.0, "fan_out")),
    "he_leaky_0.2": Case(init.he(nonlinearity="leaky_relu", param=0.2), "normal", scaled(LEAKY_GAIN2, "fan_in")),
    "he_tanh_fan_avg_uniform": Case(
        init.he("fan_avg", "uniform", nonlinearity="tanh"), "uniform", scaled(25 / 9, "fan_avg")
    ),
    "lecun_truncated_normal": Case(init.SCHEMES["lecun_truncated_normal"], "truncated_normal", scaled(1.0, "fan_in")),
    "he_truncated_normal": Case(init.SCHEMES["he_truncated_normal"], "truncated_normal", scaled(2.0, "fan_in")),
    "glorot_truncated": Case(
        init.variance_scaling(1.0, "fan_avg", "truncated_normal"), "truncated_normal", scaled(1.0, "fan_avg")
    ),
    "truncated_normal(0.3, 1)": Case(init.truncated_normal(0.3, 1.0), "truncated_normal", lambda s: 0.3, mean=1.0),
    "normal(0.5)": Case(init.normal(0.5), "normal", lambda s: 0.5),
    "standard_normal": Case(init.SCHEMES["standard_normal"], "normal", lambda s: 1.0),
    "uniform(-0.3, 0.7)": Case(init.uniform(-0.3, 0.7), "uniform", lambda s: 1.0 / math.sqrt(12.0), mean=0.2),
    "orthogonal": Case(init.SCHEMES["orthogonal"], "orthogonal", orthogonal_std(1.0)),
    "orthogonal_relu": Case(init.SCHEMES["orthogonal_relu"], "orthogonal", orthogonal_std(math.sqrt(2.0))),
    "orthogonal(0.5)": Case(init.orthogonal(0.5), "orthogonal", orthogonal_std(0.5)),
}
#: Schemes in init.SCHEMES that are other names for a registry entry (aliases) or deterministic.
ALIASES = {
    "lecun": "lecun_normal",
    "glorot": "glorot_normal",
    "xavier": "glorot_normal",
    "he": "he_normal",
    "kaiming": "he_normal",
}
DETERMINISTIC = {"zeros", "identity"}


def test_every_named_scheme_is_in_the_registry() -> None:
    covered = set(REGISTRY) | set(ALIASES) | DETERMINISTIC
    assert set(init.SCHEMES) <= covered, sorted(set(init.SCHEMES) - covered)
    for alias, name in ALIASES.items():
        assert init.SCHEMES[alias] is REGISTRY[name].initializer


def test_aliases_stay_aliases() -> None:
    assert init.kaiming_normal is init.he_normal and init.kaiming_uniform is init.he_uniform
    assert init.xavier_normal is init.glorot_normal and init.xavier_uniform is init.glorot_uniform


def ks_distribution(case: Case, std: float) -> object:
    if case.family == "normal":
        return stats.norm(loc=case.mean, scale=std)
    if case.family == "uniform":
        return stats.uniform(loc=case.mean - SQRT3 * std, scale=2 * SQRT3 * std)
    # Cut at +-2 of the underlying normal, whose scale is std / 0.8796 (the variance correction).
    return stats.truncnorm(-2.0, 2.0, loc=case.mean, scale=std / init.TRUNCATED_STD)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_samples_have_the_target_variance_and_distribution(name: str, shape: tuple[int, ...], dtype: type) -> None:
    case = REGISTRY[name]
    # A fixed seed per case (crc32, not hash(): str hashes are salted per process, so each run drew anew).
    w = case.initializer(np.random.default_rng(zlib.crc32(f"{name}{shape}".encode())), shape, dtype)
    assert w.shape == shape and w.dtype == dtype
    target = case.std(shape)
    n = w.size
    mean_square = float(np.mean((w.astype(np.float64) - case.mean) ** 2))
    if case.family == "orthogonal":
        # Exact up to rounding: float32 entries carry ~6e-8 relative error each.
        assert mean_square == pytest.approx(target**2, rel=1e-5)
        return
    # The mean square of n draws around the known mean has relative standard error sqrt((kurtosis - 1) / n),
    # kurtosis 3 for the normal and less for the uniform (1.8) and the truncated normal (~2.4): 5 standard
    # errors of the normal bound it, a false alarm about once in 1.7 million.
    assert abs(mean_square / target**2 - 1.0) < 5 * math.sqrt(2.0 / n)
    p_value = stats.kstest(w.ravel().astype(np.float64), ks_distribution(case, target).cdf).pvalue
    assert p_value > 1e-4, f"KS p = {p_value:.2e}"


@pytest.mark.parametrize("shape", [(50, 50), (80, 20), (20, 80), (16, 4, 3, 3), (6, 4, 5)])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_orthogonal_rows_or_columns_are_orthonormal(shape: tuple[int, ...], dtype: type) -> None:
    g = 1.7
    w = init.orthogonal(g)(0, shape, dtype).reshape(shape[0], -1).astype(np.float64)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    # float32 rounding of entries of size ~1/sqrt(n): ~1e-7 relative, summed over <= 80 terms.
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(gram, g**2 * np.eye(gram.shape[0]), atol=tol * g**2)


def test_orthogonal_is_haar_distributed_enough_that_entries_look_normal() -> None:
    # Entries of a Haar orthogonal n x n matrix are approximately N(0, 1/n) for large n.
    w = init.orthogonal()(3, (400, 400))
    assert stats.kstest(w.ravel() * math.sqrt(400), "norm").pvalue > 1e-4


def test_deterministic_schemes() -> None:
    assert not init.zeros(0, (3, 4), np.float32).any()
    assert init.constant(0.25)(0, (2, 2)).tolist() == [[0.25, 0.25], [0.25, 0.25]]
    np.testing.assert_array_equal(init.SCHEMES["identity"](0, (3, 5)), np.eye(3, 5))
    kernel = init.identity(2.0)(0, (4, 3, 3, 3))
    assert kernel.sum() == 6.0 and kernel[2, 2, 1, 1] == 2.0 and kernel[3].sum() == 0.0


def test_he_normal_keeps_the_course_draw_order() -> None:
    # The course table relies on randn(n_out, n_in) * sqrt(2 / n_in) from a seeded RandomState, in float64.
    np.random.seed(3)  # noqa: NPY002 - the course's own code
    expected = np.random.randn(10, 2) * np.sqrt(2 / 2)  # noqa: NPY002
    np.testing.assert_array_equal(init.he_normal(np.random.RandomState(3), (10, 2)), expected)
    assert init.he() is not init.he_normal  # a factory: a fresh initializer with the same draws
    np.testing.assert_array_equal(init.he()(5, (7, 9)), init.he_normal(5, (7, 9)))


def test_float32_is_the_float64_draw_rounded() -> None:
    for initializer in (init.he_normal, init.orthogonal(), init.truncated_normal(0.2), init.glorot_uniform):
        np.testing.assert_array_equal(initializer(7, (20, 30), np.float32), initializer(7, (20, 30)).astype(np.float32))


def test_truncated_normal_stays_within_two_underlying_standard_deviations() -> None:
    w = init.truncated_normal(0.5, mean=-1.0)(0, (100_000,))
    bound = 2 * 0.5 / init.TRUNCATED_STD
    assert w.min() >= -1.0 - bound and w.max() <= -1.0 + bound
    assert init.TRUNCATED_STD == pytest.approx(stats.truncnorm(-2, 2).std(), rel=1e-15)


def test_fans_follow_the_pytorch_layout() -> None:
    assert init.fans((100, 64)) == (64, 100)
    assert init.fans((16, 3, 5, 5)) == (75, 400)
    assert init.fans((8, 4, 3)) == (12, 24)
    assert init.fans((7,)) == (7, 7)


@pytest.mark.parametrize(
    ("nonlinearity", "param", "expected"),
    [
        ("linear", None, 1.0),
        ("conv2d", None, 1.0),
        ("sigmoid", None, 1.0),
        ("tanh", None, 5.0 / 3.0),
        ("relu", None, math.sqrt(2.0)),
        ("leaky_relu", None, math.sqrt(2.0 / (1 + 0.01**2))),
        ("leaky_relu", 0.2, math.sqrt(2.0 / 1.04)),
        ("leaky_relu", 1, 1.0),
        ("selu", None, 0.75),
    ],
)
def test_gain(nonlinearity: str, param: float | None, expected: float) -> None:
    assert init.gain(nonlinearity, param) == pytest.approx(expected, rel=1e-15)


BUILD_ERRORS: list[tuple[str, Callable[[], object]]] = [
    ("scale", lambda: init.variance_scaling(0.0)),
    ("scale", lambda: init.variance_scaling(-2.0)),
    ("scale", lambda: init.variance_scaling(float("nan"))),
    ("mode", lambda: init.variance_scaling(1.0, "fan_sum")),  # type: ignore[arg-type]
    ("distribution", lambda: init.variance_scaling(1.0, "fan_in", "cauchy")),  # type: ignore[arg-type]
    ("mode", lambda: init.he("in")),  # type: ignore[arg-type]
    ("nonlinearity", lambda: init.he(nonlinearity="swish")),
    ("gain", lambda: init.orthogonal(0.0)),
    ("std", lambda: init.truncated_normal(-1.0)),
    ("std", lambda: init.normal(0.0)),
    ("scale", lambda: init.identity(float("inf"))),
    ("nonlinearity", lambda: init.gain("swish")),
    ("param", lambda: init.gain("relu", 0.1)),
    ("param", lambda: init.gain("leaky_relu", True)),  # type: ignore[arg-type]
    ("low, high", lambda: init.uniform(1.0, 0.0)),
]


@pytest.mark.parametrize(("argument", "build"), BUILD_ERRORS, ids=[f"{a}-{i}" for i, (a, _) in enumerate(BUILD_ERRORS)])
def test_bad_arguments_are_rejected_when_built(argument: str, build: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match=rf"^{argument}"):
        build()


@pytest.mark.parametrize("shape", [(0, 3), (3, -1), (2.5, 3), "3x3", (True, 2), ()])
@pytest.mark.parametrize("name", ["he_normal", "orthogonal", "truncated_normal(0.3, 1)"])
def test_bad_shapes_are_rejected_before_any_draw(name: str, shape: object) -> None:
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    with pytest.raises(ValueError, match=r"^shape"):
        REGISTRY[name].initializer(rng, shape)  # type: ignore[arg-type]
    assert rng.bit_generator.state == state


@pytest.mark.parametrize("initializer", [init.orthogonal(), init.identity()])
def test_matrix_schemes_reject_vectors(initializer: init.Initializer) -> None:
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        initializer(0, (5,))


# ---------------------------------------------------------------------- torch as the oracle


@pytest.mark.torch
def test_gain_and_fans_agree_with_torch() -> None:
    torch = pytest.importorskip("torch")
    for name in ("linear", "conv1d", "conv3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"):
        assert init.gain(name) == pytest.approx(torch.nn.init.calculate_gain(name), rel=1e-15)
    assert init.gain("leaky_relu", 0.3) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", 0.3), rel=1e-15)
    for shape in SHAPES:
        assert init.fans(shape) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


TORCH_PAIRS = [
    ("he_normal", "kaiming_normal_", {"mode": "fan_in", "nonlinearity": "relu"}),
    ("he_fan_out", "kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("he_uniform", "kaiming_uniform_", {"mode": "fan_in", "nonlinearity": "relu"}),
    ("he_leaky_0.2", "kaiming_normal_", {"a": 0.2, "nonlinearity": "leaky_relu"}),
    ("glorot_normal", "xavier_normal_", {}),
    ("glorot_uniform", "xavier_uniform_", {}),
    ("orthogonal_relu", "orthogonal_", {"gain": math.sqrt(2.0)}),
]


@pytest.mark.torch
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(("name", "function", "kwargs"), TORCH_PAIRS, ids=[p[0] for p in TORCH_PAIRS])
def test_std_and_distribution_agree_with_torch(
    name: str, function: str, kwargs: dict[str, object], shape: tuple[int, ...]
) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = getattr(torch.nn.init, function)(torch.empty(shape, dtype=torch.float64), **kwargs).numpy()
    ours = REGISTRY[name].initializer(1, shape)
    n = theirs.size
    # Both samples estimate the same variance, each with relative standard error <= sqrt(2 / n).
    assert abs(np.mean(ours**2) / np.mean(theirs**2) - 1.0) < 5 * math.sqrt(4.0 / n)
    # Same distribution: a two-sample KS test on the two draws.
    assert stats.ks_2samp(ours.ravel(), theirs.ravel()).pvalue > 1e-4


@pytest.mark.parametrize("dtype", [np.int32, np.int64, bool, np.complex128, "not a dtype"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_non_floating_dtypes_are_rejected_before_any_draw(name: str, dtype: object) -> None:
    # As integers, weights of variance 2/n would round to -1, 0 and 1: a silent disaster.
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    with pytest.raises(ValueError, match=r"^dtype: expected a floating dtype"):
        REGISTRY[name].initializer(rng, (4, 3), dtype)  # type: ignore[arg-type]
    assert rng.bit_generator.state == state


@pytest.mark.parametrize("initializer", [init.zeros, init.constant(0.5), init.identity(2.0)])
def test_deterministic_schemes_reject_non_floating_dtypes_too(initializer: init.Initializer) -> None:
    with pytest.raises(ValueError, match=r"^dtype: expected a floating dtype"):
        initializer(0, (3, 3), np.int32)


@pytest.mark.parametrize("factory", ["he", "orthogonal", "normal", "uniform", "identity", "variance_scaling"])
def test_a_factory_passed_where_an_initializer_belongs_says_to_call_it(factory: str) -> None:
    with pytest.raises(ValueError, match=rf"scheme: init\.{factory} builds an initializer; call it first"):
        init.get(getattr(init, factory))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: init.normal(1.0, mean=float("nan")), r"^mean: expected a number"),
        (lambda: init.normal(1.0, mean=float("inf")), r"^mean: expected a number"),
        (lambda: init.uniform("a", 1.0), r"^low: expected a number in \(-inf, inf\), got 'a'"),  # type: ignore[arg-type]
    ],
)
def test_means_and_bounds_are_checked_when_built(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
