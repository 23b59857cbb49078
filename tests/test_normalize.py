"""Standardizer: the statistics are exact, the transform keeps the dtype, bad input is refused by name."""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from preflight import NotFittedError, PreflightWarning, Standardizer
from preflight.normalize import ConstantFeatureWarning

EPS = np.finfo(np.float64).eps


def reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance by math.fsum over float64 values: correctly rounded sums, two passes."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    mean = np.array([math.fsum(column) / n for column in x.T])
    var = np.array([math.fsum((column - m) ** 2) / n for column, m in zip(x.T, mean, strict=True)])
    return mean, var


# ---------------------------------------------------------------------- statistics
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_matches_a_correctly_rounded_two_pass_reference(dtype: type) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((5000, 4)) * [1.0, 1e-3, 1e3, 7.0] + [0.0, 5.0, -2e4, 1e6]).astype(dtype)
    s = Standardizer().fit(x)
    mean, var = reference(x)
    # float64 sums of 5000 shifted values err by ~ 5000 eps at worst; 1e-12 leaves a margin of 200.
    np.testing.assert_allclose(s.mean_, mean, rtol=1e-12)
    np.testing.assert_allclose(s.var_, var, rtol=1e-12)
    np.testing.assert_allclose(s.scale_, np.sqrt(var), rtol=1e-12)
    assert s.mean_.dtype == s.var_.dtype == np.float64
    assert s.n_samples_seen_ == 5000 and s.n_features_in_ == 4


def test_samples_are_rows_and_scikit_learn_agrees() -> None:
    sklearn = pytest.importorskip("sklearn.preprocessing")
    x = np.random.default_rng(1).standard_normal((300, 3)) * [1.0, 10.0, 100.0]
    ours, theirs = Standardizer().fit(x), sklearn.StandardScaler().fit(x)
    # Both accumulate in float64 (differently): they agree to rounding.
    np.testing.assert_allclose(ours.mean_, theirs.mean_, rtol=1e-13)
    np.testing.assert_allclose(ours.scale_, theirs.scale_, rtol=1e-13)
    np.testing.assert_allclose(ours.transform(x), theirs.transform(x), rtol=1e-12, atol=1e-13)


# Rows and a chunking of them: split points strictly inside (0, n).
@st.composite
def rows_and_chunking(draw: st.DrawFn) -> tuple[np.ndarray, list[int]]:
    n = draw(st.integers(1, 60))
    p = draw(st.integers(1, 4))
    values = draw(hnp.arrays(np.float64, (n, p), elements=st.floats(-1e3, 1e3, allow_subnormal=False)))
    offset = draw(st.sampled_from([0.0, 1.0, -1e6, 1e9]))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    cuts = sorted(draw(st.sets(st.integers(1, max(n - 1, 1)), max_size=8))) if n > 1 else []
    return (values + offset).astype(dtype), cuts


@settings(max_examples=200, deadline=None)
@given(rows_and_chunking())
def test_partial_fit_over_any_chunking_equals_fit(case: tuple[np.ndarray, list[int]]) -> None:
    x, cuts = case
    streamed = Standardizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantFeatureWarning)  # hypothesis finds constant columns often
        whole = Standardizer().fit(x)
        for chunk in np.split(x, cuts):
            streamed.partial_fit(chunk)
    assert streamed.n_samples_seen_ == whole.n_samples_seen_ == x.shape[0]
    std = np.sqrt(whole.var_)
    # 1e-12 relative to the data's scale: the mean relative to |mean| + std (a mean near 0 has no relative digits),
    # the variance relative to itself plus (n eps |mean|)^2, the rounding of values of that magnitude: below that
    # a variance is rounding noise (near_constant calls such features constant).
    np.testing.assert_array_less(np.abs(streamed.mean_ - whole.mean_), 1e-12 * (np.abs(whole.mean_) + std) + 1e-300)
    noise = (x.shape[0] * EPS * whole.mean_) ** 2  # float64 statistics whatever the input dtype
    np.testing.assert_array_less(np.abs(streamed.var_ - whole.var_), 1e-12 * whole.var_ + noise + 1e-300)


def test_a_large_offset_costs_no_digits() -> None:
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((100_000, 2))
    x = 1e9 + noise
    # x - 1e9 is exact (Sterbenz), so the reference below sees exactly the values the Standardizer sees.
    mean, var = reference(x - 1e9)
    naive_var = (x**2).mean(axis=0) - x.mean(axis=0) ** 2  # the textbook formula loses every digit here
    assert np.all(np.abs(naive_var - var) > 0.1 * var)
    s = Standardizer().fit(x)
    # mean_ is a float64 near 1e9: it can only be right to its rounding, half an ulp (6e-8); allow one ulp.
    np.testing.assert_allclose(s.mean_ - 1e9, mean, rtol=0, atol=np.spacing(1e9))
    np.testing.assert_allclose(s.var_, var, rtol=1e-12)  # shifted sums: rounding only, ~1e-15
    chunks = Standardizer()
    for part in np.array_split(x, 7):
        chunks.partial_fit(part)
    np.testing.assert_allclose(chunks.var_, var, rtol=1e-12)


@pytest.mark.slow
def test_float32_input_with_more_than_2_to_the_25_rows_is_exact() -> None:
    n = 2**25 + 2**20  # past 2^24, where a float32 accumulator stops counting: 2^24 + 1 == 2^24
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, 1), dtype=np.float32)
    x += np.float32(3.0)
    s = Standardizer().fit(x)
    chunk_sums = [np.add.reduce(c, dtype=np.float64) for c in np.array_split(x[:, 0], 64)]
    mean = math.fsum(float(c) for c in chunk_sums) / n
    var = math.fsum(float(np.sum((c.astype(np.float64) - mean) ** 2)) for c in np.array_split(x[:, 0], 64)) / n
    # Each reference chunk sum is a pairwise float64 sum (error ~ 1e-16 relative): 1e-12 is rounding plus margin.
    assert s.n_samples_seen_ == n
    np.testing.assert_allclose(s.mean_, [mean], rtol=1e-12)
    np.testing.assert_allclose(s.var_, [var], rtol=1e-12)
    out = s.transform(x[:1000])
    assert out.dtype == np.float32


def test_a_constant_feature_gets_scale_one_and_a_warning_naming_it() -> None:
    x = np.column_stack([np.arange(6.0), np.full(6, 4.2)])
    with pytest.warns(ConstantFeatureWarning, match=r"\['x1'\]"):
        s = Standardizer().fit(x)
    assert s.var_[1] == 0.0 and s.scale_[1] == 1.0
    np.testing.assert_array_equal(s.transform(x)[:, 1], 0.0)  # centered, never -1 or NaN


def test_a_near_constant_feature_is_found_by_its_error_bound_not_by_equality() -> None:
    pd = pytest.importorskip("pandas")
    tiny = np.array([0.1, 0.1, np.nextafter(0.1, 1.0), 0.1 * 3 / 3])  # differ in the last bit only
    frame = pd.DataFrame({"spread": [1.0, 2.0, 3.0, 4.0], "rounded": tiny, "big": 1e9 + np.arange(4.0)})
    with pytest.warns(ConstantFeatureWarning, match=r"\['rounded'\]") as caught:
        s = Standardizer().fit(frame)
    assert s.var_[1] > 0.0  # not == 0: the bound found it
    assert s.scale_[1] == 1.0 and s.scale_[2] == pytest.approx(np.sqrt(1.25))
    assert "big" not in str(caught[0].message)  # 1e9 + small spread is real variance, not rounding


def test_with_std_false_keeps_scale_none_and_only_centers() -> None:
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    s = Standardizer(with_std=False).fit(x)
    assert s.scale_ is None
    np.testing.assert_array_equal(s.transform(x), x - [2.0, 4.0])
    np.testing.assert_array_equal(Standardizer(with_mean=False).fit(x).transform(x), x / [1.0, 2.0])


# ---------------------------------------------------------------------- dtypes and copies
@pytest.mark.parametrize(
    ("dtype", "out"), [(np.float64, np.float64), (np.float32, np.float32), (np.int64, np.float64), (bool, np.float64)]
)
def test_output_keeps_the_input_float_dtype(dtype: type, out: type) -> None:
    x = (np.arange(24).reshape(8, 3) % 5).astype(dtype)
    s = Standardizer().fit(x)
    z = s.transform(x)
    assert z.dtype == out and s.inverse_transform(z).dtype == out
    assert s.mean_.dtype == np.float64


def test_float32_transform_is_as_accurate_as_float32_allows() -> None:
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((2000, 3)) * [1.0, 0.01, 50.0] + [0.0, 100.0, 1e4]).astype(np.float32)
    s = Standardizer().fit(x)
    exact = (x.astype(np.float64) - s.mean_) / s.scale_
    # Rounding the mean to float32 costs half an ulp of the mean (relative to scale), the product one float32 ulp.
    f32 = np.finfo(np.float32).eps
    bound = f32 * (np.abs(s.mean_) / s.scale_ + np.abs(exact) + 1.0)
    assert np.all(np.abs(s.transform(x) - exact) <= bound)
    np.testing.assert_allclose(s.inverse_transform(s.transform(x)), x, rtol=4 * f32, atol=4 * f32 * np.abs(x).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "shape",
    [(1, 1), (7, 3), (205, 20), (206, 20), (50_001, 20), (300_001, 7), (40, 5000)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_blocked_transform_is_bitwise_the_plain_formula_in_place_or_not(shape: tuple[int, int], dtype: type) -> None:
    # The transform works in cache-sized blocks, views whole groups of rows as one long row, runs on two threads
    # and keeps a remainder: none of that may change a single bit of (x - mean) * (1 / scale) in the input dtype.
    # The shapes cover one row, a remainder of rows, several blocks and threads, and rows longer than a group.
    rng = np.random.default_rng(shape[0] * 31 + shape[1])
    x = (rng.standard_normal(shape) * rng.uniform(0.1, 10.0, shape[1]) + rng.uniform(-5, 5, shape[1])).astype(dtype)
    with pytest.warns(ConstantFeatureWarning) if shape[0] == 1 else contextlib.nullcontext():  # one row: constant
        s = Standardizer().fit(x)
    mean, scale = s.mean_.astype(dtype), s.scale_.astype(dtype)
    expected = (x - mean) * (1.0 / s.scale_).astype(dtype)
    np.testing.assert_array_equal(s.transform(x), expected)
    np.testing.assert_array_equal(s.inverse_transform(expected), expected * scale + mean)
    y = x.copy()
    assert s.transform(y, copy=False) is y
    np.testing.assert_array_equal(y, expected)


def test_inputs_are_never_modified_unless_copy_is_false() -> None:
    x = np.random.default_rng(5).standard_normal((50, 3))
    kept = x.copy()
    s = Standardizer().fit(x)
    z = s.transform(x)
    s.inverse_transform(z)
    np.testing.assert_array_equal(x, kept)
    assert not np.shares_memory(z, x)
    in_place = Standardizer(copy=False).fit(x).transform(x)
    assert in_place is x and not np.array_equal(x, kept)
    y = kept.copy()
    assert s.transform(y, copy=False) is y


# ---------------------------------------------------------------------- bad input
def test_nan_and_inf_are_refused_naming_the_features() -> None:
    pd = pytest.importorskip("pandas")
    x = np.ones((5, 4))
    x[2, 1], x[4, 3] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"NaN or infinity in feature\(s\) \['x1', 'x3'\].*ignore_nan=True"):
        Standardizer().fit(x)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"\['b', 'd'\]"):
        Standardizer().fit(frame)
    s = Standardizer().fit(np.arange(8.0).reshape(2, 4))
    with pytest.raises(ValueError, match=r"\['x1', 'x3'\]"):
        s.transform(x)


def test_a_refused_in_place_transform_leaves_the_array_untouched() -> None:
    # Large enough for several blocks and both threads: the bad value sits in the very last row, so a transform
    # that worked block by block before checking would already have changed the first blocks.
    x = np.random.default_rng(0).standard_normal((400_000, 12))
    s = Standardizer().fit(x)
    x[-1, 5] = np.nan
    kept = x.copy()
    with pytest.raises(ValueError, match=r"\['x5'\]"):
        s.transform(x, copy=False)
    np.testing.assert_array_equal(x, kept)
    with pytest.raises(ValueError, match=r"\['x5'\]"):
        s.transform(x)
    np.testing.assert_array_equal(x, kept)


def test_finite_input_whose_sum_or_result_overflows_is_no_nan_error() -> None:
    # float16 holds 30000 but not the sum of three of them: the transform's quick finite test (one sum per block)
    # sees inf, and the closer look at the input must clear it.
    s = Standardizer().fit(np.array([[0.0], [60000.0]], dtype=np.float16))
    z = np.zeros((1000, 1), dtype=np.float16)
    np.testing.assert_array_equal(s.inverse_transform(z), np.full((1000, 1), 30000.0, dtype=np.float16))
    # 2 * 30000 + 30000 overflows float16 itself: NumPy warns of the overflow, and the input (not the result) is
    # what the NaN/inf error is about.
    with pytest.warns(RuntimeWarning, match="overflow"):
        assert np.isposinf(s.inverse_transform(np.full((3, 1), 2.0, dtype=np.float16))).all()


def test_ignore_nan_leaves_nan_out_of_fit_and_passes_it_through() -> None:
    x = np.array([[1.0, 10.0], [np.nan, 20.0], [3.0, np.nan], [5.0, 40.0]])
    s = Standardizer(ignore_nan=True).fit(x)
    np.testing.assert_allclose(s.mean_, [3.0, 70.0 / 3])
    np.testing.assert_allclose(s.var_, np.nanvar(x, axis=0))
    np.testing.assert_array_equal(s.n_samples_seen_, [3, 3])
    z = s.transform(x)
    np.testing.assert_array_equal(np.isnan(z), np.isnan(x))
    x[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"infinity in feature\(s\) \['x0'\]"):
        Standardizer(ignore_nan=True).fit(x)


def test_wrong_feature_count_says_expected_and_got() -> None:
    s = Standardizer().fit(np.ones((4, 3)) * [1, 2, 3] + np.arange(4)[:, None])
    with pytest.raises(ValueError, match=r"X has 2 features, but Standardizer is expecting 3 features"):
        s.transform(np.ones((4, 2)))
    with pytest.raises(ValueError, match="expecting 3"):
        s.partial_fit(np.ones((4, 2)))


def test_use_before_fit_is_a_not_fitted_error() -> None:
    s = Standardizer()
    for call in (lambda: s.transform([[1.0]]), lambda: s.inverse_transform([[1.0]]), s.get_feature_names_out):
        with pytest.raises(NotFittedError, match="fit"):
            call()
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.arange(3.0), "Reshape your data"),
        (np.empty((0, 3)), r"0 sample\(s\)"),
        (np.empty((3, 0)), r"0 feature\(s\)"),
        (np.array([["a", "b"]]), "numeric"),
        (np.ones((2, 2)) * 1j, "Complex data not supported"),
        (
            np.array([[1.0, "2.5"], [2.0, "n/a"]], dtype=object),
            r"X: expected numbers, got 'n/a' in feature 'x1' \(row 1\)",
        ),
    ],
)
def test_malformed_input_is_a_value_error(bad: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Standardizer().fit(bad)


def test_hyperparameters_are_checked_in_fit_naming_them() -> None:
    with pytest.raises(
        ValueError, match=r"The 'with_mean' parameter of Standardizer must be True or False .* Got 'yes'"
    ):
        Standardizer(with_mean="yes").fit(np.ones((2, 1)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected one of"):
        Standardizer().set_params(scale=2)


# ---------------------------------------------------------------------- scikit-learn conventions
def test_feature_names_come_from_dataframe_columns() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"age": [20.0, 30.0, 40.0], "income": [1e4, 2e4, 6e4]})
    s = Standardizer().fit(frame)
    assert list(s.feature_names_in_) == ["age", "income"]
    assert list(s.get_feature_names_out()) == ["age", "income"]
    with pytest.raises(ValueError, match="feature names should match"):
        s.transform(frame.rename(columns={"age": "years"}))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        s.transform(frame.to_numpy())
    assert list(Standardizer().fit(frame.to_numpy()).get_feature_names_out()) == ["x0", "x1"]


def test_works_in_a_pipeline_and_clones() -> None:
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(6)
    x = rng.standard_normal((200, 2)) * [1.0, 1000.0]
    y = (x[:, 0] + x[:, 1] / 1000.0 > 0).astype(int)
    pipe = make_pipeline(Standardizer(), LogisticRegression()).fit(x, y)
    assert pipe.score(x, y) > 0.95
    twin = clone(Standardizer(with_mean=False, ignore_nan=True))
    assert twin.get_params() == {"copy": True, "ignore_nan": True, "with_mean": False, "with_std": True}
    assert repr(twin) == "Standardizer(ignore_nan=True, with_mean=False)"


#: Checks that cannot run here, each with its reason. Everything else in check_estimator must pass.
SKIPPED_CHECKS = {
    "check_array_api_input": "needs SCIPY_ARRAY_API=1 and an array-API library; Standardizer takes NumPy input",
}


@pytest.mark.slow
@pytest.mark.parametrize("estimator", [Standardizer(), Standardizer(ignore_nan=True, with_mean=False)], ids=repr)
def test_scikit_learns_check_estimator_passes(estimator: Standardizer) -> None:
    pytest.importorskip("sklearn")
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        # The one warning sklearn gives about the design: Standardizer does not inherit from BaseEstimator, so
        # the core needs no scikit-learn; it implements the protocol (get_params, set_params, __sklearn_tags__).
        warnings.filterwarnings("ignore", message=".*does not inherit from `sklearn.base.BaseEstimator`")
        warnings.simplefilter("ignore", ConstantFeatureWarning)
        results = check_estimator(estimator, on_fail=None)
    failed = {r["check_name"]: str(r["exception"])[:200] for r in results if r["status"] == "failed"}
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert failed == {}
    assert skipped <= set(SKIPPED_CHECKS)
    assert len(results) > 40


def test_a_feature_that_is_nan_in_every_row_gets_nan_statistics_and_a_warning_naming_it() -> None:
    # StandardScaler's behaviour with ignore_nan=True (a fold of cross-validation may miss a rare feature entirely:
    # refusing it would break the pipeline); without ignore_nan NaN is refused anyway.
    x = np.array([[np.nan, 1.0], [np.nan, 2.0]])
    with pytest.warns(PreflightWarning, match=r"feature\(s\) \[.x0.\] have no values: every entry is NaN"):
        s = Standardizer(ignore_nan=True).fit(x)
    np.testing.assert_array_equal(s.mean_, [np.nan, 1.5])
    np.testing.assert_array_equal(s.var_, [np.nan, 0.25])
    np.testing.assert_array_equal(s.scale_, [np.nan, 0.5])
    np.testing.assert_array_equal(s.transform(np.array([[3.0, 2.0]])), [[np.nan, 1.0]])
    with pytest.raises(ValueError, match=r"X: NaN .*\['x0'\]|x0"):
        Standardizer().fit(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice", no constant-feature warning
        # Chunk by chunk a feature may start as NaN only; later rows give it its statistics.
        s = Standardizer(ignore_nan=True).partial_fit(x).partial_fit(np.array([[3.0, 1.0], [5.0, 2.0]]))
    np.testing.assert_array_equal(s.mean_, [4.0, 1.5])
    np.testing.assert_array_equal(s.n_samples_seen_, [2, 4])


def test_a_feature_without_values_saves_and_loads_to_the_same_nan_statistics(tmp_path: Path) -> None:
    x = np.array([[np.nan, 1.0], [np.nan, 3.0]])
    with pytest.warns(PreflightWarning, match="no values"):
        s = Standardizer(ignore_nan=True).fit(x)
    loaded = Standardizer.load(s.save(tmp_path / "stats.json"))
    np.testing.assert_array_equal(loaded.scale_, s.scale_)
    np.testing.assert_array_equal(loaded.mean_, s.mean_)


def test_with_mean_and_with_std_false_leave_mean_and_var_none_as_scikit_learn() -> None:
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    s = Standardizer(with_std=False).fit(x)
    np.testing.assert_array_equal(s.mean_, [2.0, 4.0])
    assert s.var_ is None and s.scale_ is None
    s = Standardizer(with_mean=False, with_std=False).partial_fit(x)
    assert s.mean_ is None and s.var_ is None and s.scale_ is None and s.n_samples_seen_ == 2
    np.testing.assert_array_equal(s.transform(x), x)
    # The statistics are still kept: partial_fit goes on, and a later with_std=True fit has them.
    s.partial_fit(x)
    assert s.n_samples_seen_ == 4
    np.testing.assert_array_equal(Standardizer(with_mean=False).fit(x).mean_, [2.0, 4.0])
