"""Sample weights in every path (arrays, chunks, files, the command line, dask), and the constant-feature test,
which must depend on a column's values and row count only (issue #14, item 6)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from preflight import Standardizer
from preflight.cli import main
from preflight.normalize import ConstantFeatureWarning, moments

EPS = np.finfo(np.float64).eps
# A weighted fit and the fit of the repeated rows sum the same numbers in another order: float64 rounding of a few
# hundred terms, far below 1e-12 relative (the tolerance of the chunking test in test_normalize.py).
RTOL = 1e-12


def quiet_fit(s: Standardizer, *args: object, **kwargs: object) -> Standardizer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantFeatureWarning)  # hypothesis finds constant columns often
        return s.fit(*args, **kwargs)  # type: ignore[arg-type]


def assert_statistics_close(a: Standardizer, b: Standardizer, scale: Any = 0.0) -> None:
    """Equal up to rounding; ``scale`` is the largest |x| fitted, zero-weight rows included: such a row may set the
    reference the sums are taken about, and the mean then carries a rounding of its size (an ulp of 8e-78 is 1e-93
    where every weighted row is 0)."""
    spread = np.sqrt(b.var_)
    noise = (np.max(np.atleast_1d(b.n_samples_seen_)) * EPS * b.mean_) ** 2  # rounding of values of that size
    reference = 4 * EPS * np.asarray(scale)
    np.testing.assert_array_less(np.abs(a.mean_ - b.mean_), RTOL * (np.abs(b.mean_) + spread) + reference + 1e-300)
    np.testing.assert_array_less(np.abs(a.var_ - b.var_), RTOL * b.var_ + noise + reference**2 + 1e-300)


# ---------------------------------------------------------------------- weights are repetitions
@st.composite
def rows_weights_and_cuts(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, list[int]]:
    n = draw(st.integers(1, 40))
    p = draw(st.integers(1, 4))
    x = draw(hnp.arrays(np.float64, (n, p), elements=st.floats(-1e3, 1e3, allow_subnormal=False)))
    x = x + draw(st.sampled_from([0.0, 1.0, -1e6, 1e9]))
    w = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 4)))
    assume(w.sum() > 0)
    cuts = sorted(draw(st.sets(st.integers(1, max(n - 1, 1)), max_size=6))) if n > 1 else []
    return x, w, cuts


@pytest.mark.filterwarnings("ignore::preflight.normalize.ConstantFeatureWarning")  # constant columns by design
@settings(max_examples=150, deadline=None)
@given(rows_weights_and_cuts())
def test_integer_weights_give_the_statistics_of_the_repeated_rows_in_any_chunking(
    case: tuple[np.ndarray, np.ndarray, list[int]],
) -> None:
    x, w, cuts = case
    weighted = quiet_fit(Standardizer(), x, sample_weight=w)
    repeated = quiet_fit(Standardizer(), np.repeat(x, w, axis=0))
    assert_statistics_close(weighted, repeated)
    # scikit-learn's convention: with weights, n_samples_seen_ is their sum, a float.
    assert isinstance(weighted.n_samples_seen_, float) and weighted.n_samples_seen_ == w.sum()
    streamed = Standardizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantFeatureWarning)
        for part, part_w in zip(np.split(x, cuts), np.split(w, cuts), strict=True):
            if part_w.any():  # partial_fit refuses an all-zero chunk, as scikit-learn does; fit_chunks takes it
                streamed.partial_fit(part, sample_weight=part_w)
    assert_statistics_close(streamed, weighted, np.max(np.abs(x), axis=0))
    chunked = Standardizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantFeatureWarning)
        chunked.fit_chunks(np.split(x, cuts), weights=np.split(w, cuts))
    assert_statistics_close(chunked, weighted, np.max(np.abs(x), axis=0))


def test_fractional_weights_match_a_two_pass_float64_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 3)) * [1.0, 1e-3, 1e3] + [0.0, 5.0, 1e9]
    w = rng.uniform(0.0, 2.0, 5000)
    s = Standardizer().fit(x, sample_weight=w)
    total = math.fsum(w)
    mean = np.array([math.fsum(w * c) / total for c in x.T])
    var = np.array([math.fsum(w * (c - m) ** 2) / total for c, m in zip(x.T, mean, strict=True)])
    np.testing.assert_allclose(s.mean_, mean, rtol=1e-13)
    np.testing.assert_allclose(s.var_, var, rtol=1e-11)  # 1e9 + N(0, 1e3): shifted sums keep every digit
    assert s.n_samples_seen_ == pytest.approx(total, rel=1e-14)


def test_none_and_a_number_weigh_every_row_alike() -> None:
    x = np.array([[1.0, 2.0], [3.0, 7.0], [4.0, 1.0]])
    plain = Standardizer().fit(x)
    assert Standardizer().fit(x, sample_weight=None).n_samples_seen_ == 3  # an int: no weights
    twice = Standardizer().fit(x, sample_weight=2.0)
    np.testing.assert_allclose(twice.var_, plain.var_, rtol=1e-15)
    assert twice.n_samples_seen_ == 6.0


@pytest.mark.filterwarnings("ignore::preflight.normalize.ConstantFeatureWarning")  # constant columns by design
def test_a_zero_weight_row_is_left_out_and_nan_counts_are_weighted() -> None:
    x = np.array([[1.0, np.nan], [3.0, 5.0], [1e6, 7.0]])
    s = Standardizer(ignore_nan=True).fit(x, sample_weight=[1.0, 3.0, 0.0])
    np.testing.assert_array_equal(s.mean_, [2.5, 5.0])
    np.testing.assert_array_equal(s.n_samples_seen_, [4.0, 3.0])


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (np.ones((3, 1)), "Sample weights must be 1D array or scalar, got 2D"),
        (np.ones(2), r"sample_weight.shape == \(2,\), expected \(3,\)"),
        ([1.0, -1.0, 1.0], "expected weights >= 0, got -1.0 at row 1"),
        ([1.0, np.nan, 1.0], "expected finite weights, got nan at row 1"),
        (np.zeros(3), "Sample weights must contain at least one non-zero number"),
        (["a", "b", "c"], "sample_weight: expected numbers"),
    ],
)
def test_bad_weights_are_refused_naming_the_argument(weights: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Standardizer().fit(np.ones((3, 2)) * [[1.0], [2.0], [3.0]], sample_weight=weights)


def test_weights_from_a_pandas_series_and_the_fitted_state_is_untouched_by_a_refused_call() -> None:
    pd = pytest.importorskip("pandas")
    x = pd.DataFrame({"a": [1.0, 2.0, 4.0]})
    s = Standardizer().fit(x, sample_weight=pd.Series([1.0, 1.0, 2.0]))
    assert s.mean_[0] == pytest.approx(11 / 4)
    with pytest.raises(ValueError, match="weights >= 0"):
        s.partial_fit(x, sample_weight=[1.0, -2.0, 1.0])
    assert s.n_samples_seen_ == 4.0 and s.mean_[0] == pytest.approx(11 / 4)


# ---------------------------------------------------------------------- files, the command line, dask, save/load
def test_fit_file_reads_a_weight_column_from_csv_and_npy(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((700, 2)) * [1.0, 30.0], rng.integers(0, 4, 700).astype(float)
    expected = Standardizer().fit(x, sample_weight=w)
    table = np.column_stack([x[:, 0], w, x[:, 1]])
    np.save(tmp_path / "t.npy", table)
    lines = ["a,w,b"] + [f"{r[0]!r},{r[1]!r},{r[2]!r}" for r in table.tolist()]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    for name in ("t.npy", "t.csv"):
        s = Standardizer().fit_file(tmp_path / name, weight="w" if name.endswith(".csv") else 1, chunk_rows=64)
        np.testing.assert_allclose(s.mean_, expected.mean_, rtol=RTOL)
        np.testing.assert_allclose(s.var_, expected.var_, rtol=RTOL)
        assert s.n_samples_seen_ == w.sum()


def test_a_bad_weight_in_a_file_names_the_column_and_line(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,w\n1,1\n2,-3\n")
    with pytest.raises(ValueError, match=r"weights >= 0 in column 'w' of t.csv, got -3.0 on line 3"):
        Standardizer().fit_file(tmp_path / "t.csv", weight="w")
    with pytest.raises(ValueError, match=r"weight: .* is the label column"):
        Standardizer().fit_file(tmp_path / "t.csv", weight="w", label="w")


def test_cli_weight_column_fit_and_apply_pass_it_through(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train.csv").write_text("a,w,y\n1,3,0\n5,1,1\n")
    stats = tmp_path / "s.json"
    args = ["normalize", "fit", str(tmp_path / "train.csv"), "--label", "y", "--weight", "w", "-o", str(stats)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mean"] == [2.0] and report["n_samples_seen"] == 4.0 and report["weighted"] is True
    assert main(["normalize", "apply", str(stats), str(tmp_path / "train.csv"), "-o", str(tmp_path / "o.csv")]) == 0
    capsys.readouterr()
    rows = [line.split(",") for line in (tmp_path / "o.csv").read_text().splitlines()]
    assert [r[1] for r in rows] == ["w", "3", "1"]  # the weights pass through as they were
    np.testing.assert_allclose([float(rows[1][0]), float(rows[2][0])], [-1 / np.sqrt(3), 3 / np.sqrt(3)])
    # .npy: the weight column's position is recorded, so apply leaves it out as well.
    np.save(tmp_path / "t.npy", np.array([[1.0, 3.0, 0.0], [5.0, 1.0, 1.0]]))
    assert main(["normalize", "fit", str(tmp_path / "t.npy"), "--label", "2", "--weight", "1", "-o", str(stats)]) == 0
    assert main(["normalize", "apply", str(stats), str(tmp_path / "t.npy"), "-o", str(tmp_path / "o.npy")]) == 0
    out = np.load(tmp_path / "o.npy")
    np.testing.assert_allclose(out[:, 0], [-1 / np.sqrt(3), 3 / np.sqrt(3)])
    np.testing.assert_array_equal(out[:, 1:], [[3.0, 0.0], [1.0, 1.0]])
    (tmp_path / "bad.csv").write_text("a,w\n1,\n")
    assert main(["normalize", "fit", str(tmp_path / "bad.csv"), "--weight", "w", "-o", str(stats)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "finite weights >= 0 in column 'w' of bad.csv, got nan on line 2" in err


def test_weighted_statistics_save_and_load_and_partial_fit_goes_on(tmp_path: Path) -> None:
    x = np.array([[1.0], [2.0], [4.0]])
    first = Standardizer().fit(x, sample_weight=[0.5, 0.25, 0.25])
    loaded = Standardizer.load(first.save(tmp_path / "s.json"))
    assert loaded.n_samples_seen_ == 1.0 and isinstance(loaded.n_samples_seen_, float)
    np.testing.assert_array_equal(loaded.var_, first.var_)
    loaded.partial_fit(x, sample_weight=[0.5, 0.25, 0.25])
    np.testing.assert_allclose(loaded.var_, first.var_, rtol=1e-15)
    assert loaded.n_samples_seen_ == 2.0


@pytest.mark.slow  # a local dask cluster is not needed: the threaded scheduler runs dask's own reductions
def test_dask_weights_equal_the_in_memory_weighted_fit() -> None:
    da = pytest.importorskip("dask.array")
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((3000, 3)) * [1.0, 1e3, 1e-2] + [5.0, -1e6, 0.0], rng.uniform(0, 3, 3000)
    expected = Standardizer().fit(x, sample_weight=w)
    for weights in (w, da.from_array(w, chunks=500)):
        s = Standardizer().fit(da.from_array(x, chunks=(700, 3)), sample_weight=weights)
        np.testing.assert_allclose(s.var_, expected.var_, rtol=RTOL)
        assert s.n_samples_seen_ == pytest.approx(w.sum(), rel=1e-14)
    frame = dd.from_pandas(pd.DataFrame(x, columns=["u", "v", "z"]), npartitions=4)
    s = Standardizer().fit(frame, sample_weight=dd.from_pandas(pd.Series(w), npartitions=4))
    np.testing.assert_allclose(s.mean_, expected.mean_, rtol=RTOL)
    with pytest.raises(ValueError, match="sample_weight: expected finite weights >= 0"):
        Standardizer().fit(da.from_array(x, chunks=(700, 3)), sample_weight=-w)
    with pytest.raises(ValueError, match=r"one weight per row of X \(3000\)"):
        Standardizer().fit(da.from_array(x, chunks=(700, 3)), sample_weight=w[:10])


# ---------------------------------------------------------------------- constant features: the data decides
def reference_constant(column: np.ndarray) -> tuple[bool, float]:
    """scikit-learn's bound with the row count capped, on correctly rounded statistics; and how far from the edge."""
    values = column.astype(np.float64)
    n = values.size
    mean = math.fsum(values) / n
    var = math.fsum((values - mean) ** 2) / n
    m = min(n, moments.CONSTANT_ROWS_CAP)
    bound = m * EPS * var + (m * EPS * mean) ** 2
    margin = abs(var - bound) / max(var, bound, 1e-300)
    return var <= bound, margin


@settings(max_examples=200, deadline=None)
@given(
    n=st.sampled_from([2, 3, 10, 100, 700, 1500, 3000]),  # hypothesis would favour small integers
    base=st.sampled_from([1.0, 0.1, 1e9, -3e5, 1e-8, 0.0]),
    ratio=st.sampled_from([0.0, 0.05, 0.2, 0.4, 0.6, 2.0, 5.0, 1e3]),
    others=st.sampled_from([0, 5, 19, 49, 60]),
    block_bytes=st.sampled_from([1 << 10, 1 << 12, 1 << 14, 1 << 19]),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**16),
    n_chunks=st.integers(1, 5),
)
def test_whether_a_column_is_constant_depends_on_its_values_and_row_count_only(
    n: int, base: float, ratio: float, others: int, block_bytes: int, dtype: type, seed: int, n_chunks: int
) -> None:
    rng = np.random.default_rng(seed)
    # A spread of ``ratio * n`` units of eps * |base|, near the bound (n eps base)^2 for n rows: a bound that used
    # fewer rows (a block's height) calls a constant column of this kind variable.
    eps = np.finfo(dtype).eps  # float32 values differ by float32 ulps: never within float64's bound unless equal
    column = (base + rng.standard_normal(n) * ratio * n * eps * (abs(base) or 1.0)).astype(dtype)
    constant, margin = reference_constant(column)
    event(f"constant={constant}")
    assume(margin > 1e-6)  # within rounding of the bound either answer is right; elsewhere there is one answer
    at = int(rng.integers(0, others + 1))
    wide = np.insert(rng.standard_normal((n, others)) * 10.0 ** rng.integers(-3, 4, others), at, column, axis=1)
    fits = []
    with mock.patch.object(moments, "BLOCK_BYTES", block_bytes), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantFeatureWarning)
        fits.append(Standardizer().fit(column[:, None]).scale_[0])
        fits.append(Standardizer().fit(wide.astype(dtype)).scale_[at])
        fits.append(Standardizer().fit_chunks(np.array_split(wide.astype(dtype), min(n_chunks, n))).scale_[at])
        fits.append(Standardizer().fit(column[:, None], sample_weight=np.ones(n)).scale_[0])
    if constant:
        assert fits == [1.0] * 4
    else:
        # The same spread whatever the blocking: the sums differ by float64 rounding of <= 3000 terms.
        assert 1.0 not in fits
        np.testing.assert_allclose(fits, fits[0], rtol=1e-9)


def test_the_issues_column_gets_the_same_scale_alone_and_beside_49_others() -> None:
    rng = np.random.default_rng(3)
    column = 1.0 + rng.choice([-1e-12, 1e-12], 10_000)
    wide = np.column_stack([column, rng.standard_normal((10_000, 49))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantFeatureWarning)
        alone = Standardizer().fit(column[:, None])
        beside = Standardizer().fit(wide)
    # 1 +- 1e-12 is 4500 ulps: within scikit-learn's bound at n = 10,000 ((n eps)^2 = 4.9e-24 >= var = 1e-24).
    assert alone.scale_[0] == beside.scale_[0] == 1.0
    np.testing.assert_array_equal(alone.transform(column[:, None])[:, 0], beside.transform(wide)[:, 0])


def test_past_65536_rows_the_bound_stops_growing_so_real_spread_keeps_its_scale() -> None:
    # Weights stand for rows here (n is their sum, as in scikit-learn): 1e9 + N(0, 1) over a weight of 1e7 rows.
    rng = np.random.default_rng(4)
    x = 1e9 + rng.standard_normal((1000, 1))
    s = Standardizer().fit(x, sample_weight=np.full(1000, 1e4))
    assert s.scale_[0] == pytest.approx(np.std(x), rel=1e-9)
    # scikit-learn's uncapped bound, (n eps mean)^2 = 4.9 > var = 1, would call it constant.
    assert (1e7 * EPS * 1e9) ** 2 > s.var_[0]


def test_a_first_chunk_of_weight_zero_does_not_set_the_shift_of_the_next() -> None:
    # The zero-weight row lies 2e4 from the mean: summed about it, the variance would carry eps x 2e4^2 / var
    # (6e-8 relative here); the chunk that brings the first weight chooses its own shift, exact as a single fit.
    rng = np.random.default_rng(0)
    x = np.vstack([[[1e9 - 2e4]], 1e9 + rng.uniform(0, 1, (50, 1))])
    w = np.r_[0.0, np.ones(50)]
    whole = Standardizer().fit(x[1:])
    chunked = Standardizer().fit_chunks([x[:1], x[1:]], weights=[w[:1], w[1:]])
    np.testing.assert_allclose(chunked.var_, whole.var_, rtol=1e-12)
    np.testing.assert_allclose(chunked.mean_, whole.mean_, rtol=1e-15)
