"""Standardizer among scikit-learn, scipy.sparse, pandas and polars: sparse input, output containers, nullable
dtypes, scikit-learn's exception classes, and where the array API stops (issue #14)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from preflight import NotFittedError, Standardizer
from preflight.normalize import ConstantFeatureWarning, errors
from preflight.normalize.tables import transform_table

sparse = pytest.importorskip("scipy.sparse")

# Dense and sparse statistics sum the same values in another order: float64 rounding, far below 1e-12 relative.
RTOL = 1e-12
FORMATS = [sparse.csr_matrix, sparse.csc_matrix, sparse.coo_matrix, sparse.lil_matrix, sparse.csr_array]


def sparse_table(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((200, 4)) * [1.0, 50.0, 1e-3, 7.0] + [0.0, 1e3, 0.0, -2.0]
    x[rng.random(x.shape) < 0.6] = 0.0
    return x


# ---------------------------------------------------------------------- sparse input
@pytest.mark.parametrize("container", FORMATS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_statistics_count_the_implicit_zeros_and_equal_the_dense_ones(container: type, weighted: bool) -> None:
    x = sparse_table()
    w = np.random.default_rng(1).uniform(0, 2, x.shape[0]) if weighted else None
    dense = Standardizer(with_mean=False).fit(x, sample_weight=w)
    s = Standardizer(with_mean=False).fit(container(x), sample_weight=w)
    np.testing.assert_allclose(s.mean_, dense.mean_, rtol=RTOL)
    np.testing.assert_allclose(s.var_, dense.var_, rtol=RTOL)
    assert s.n_samples_seen_ == dense.n_samples_seen_
    z = s.transform(container(x))
    assert sparse.issparse(z) and z.format == "csr"  # scikit-learn's output format
    assert isinstance(z, sparse.sparray) == isinstance(container(x), sparse.sparray)  # matrix in, matrix out
    np.testing.assert_allclose(z.toarray(), dense.transform(x), rtol=1e-15)
    np.testing.assert_allclose(s.inverse_transform(z).toarray(), x, rtol=1e-14, atol=1e-300)


def test_partial_fit_on_sparse_chunks_equals_fit_and_mixes_with_dense_chunks() -> None:
    x = sparse_table(2)
    whole = Standardizer(with_mean=False).fit(x)
    streamed = Standardizer(with_mean=False)
    for i, part in enumerate(np.array_split(x, 5)):
        streamed.partial_fit(sparse.csr_matrix(part) if i % 2 else part)
    np.testing.assert_allclose(streamed.var_, whole.var_, rtol=RTOL)
    assert streamed.n_samples_seen_ == 200


def test_a_constant_sparse_column_has_variance_exactly_zero_even_weighted() -> None:
    x = np.column_stack([np.full(50, 3.7), np.arange(50.0)])
    with pytest.warns(ConstantFeatureWarning, match=r"\['x0'\]"):
        s = Standardizer(with_mean=False).fit(sparse.csc_matrix(x), sample_weight=np.linspace(0.1, 2.0, 50))
    assert s.var_[0] == 0.0 and s.scale_[0] == 1.0


def test_centering_sparse_data_is_scikit_learns_value_error_telling_the_fix() -> None:
    x = sparse.csr_matrix(sparse_table())
    for call in (lambda: Standardizer().fit(x), lambda: Standardizer().partial_fit(x)):
        with pytest.raises(ValueError, match="Cannot center sparse matrices: pass `with_mean=False`"):
            call()
    fitted = Standardizer().fit(sparse_table())
    with pytest.raises(ValueError, match="Cannot center sparse"):
        fitted.transform(x)
    with pytest.raises(ValueError, match="Cannot uncenter sparse"):
        fitted.inverse_transform(x)


def test_sparse_copy_false_scales_a_csr_float_matrix_in_place_and_nothing_else_is_touched() -> None:
    x = sparse.csr_matrix(sparse_table())
    s = Standardizer(with_mean=False).fit(x)
    before = x.data.copy()
    out = s.transform(x)
    np.testing.assert_array_equal(x.data, before)  # copy=True by default
    same = s.transform(x, copy=False)
    assert same is x and not np.array_equal(x.data, before)
    # COO with duplicate entries: they are summed for the statistics, in a copy: the caller's matrix keeps them.
    coo = sparse.coo_matrix((np.array([1.0, 2.0, 4.0]), (np.array([0, 0, 1]), np.array([0, 0, 0]))), shape=(3, 1))
    s = Standardizer(with_mean=False).fit(coo)
    assert coo.nnz == 3 and s.mean_[0] == pytest.approx(7 / 3)
    assert out.dtype == np.float64


def test_nan_and_inf_in_sparse_data_are_refused_by_name_and_nan_skipped_with_ignore_nan() -> None:
    x = sparse_table()
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity in feature\(s\) \['x2'\]"):
        Standardizer(with_mean=False).fit(sparse.csr_matrix(x))
    s = Standardizer(with_mean=False, ignore_nan=True).fit(sparse.csr_matrix(x))
    dense = Standardizer(with_mean=False, ignore_nan=True).fit(x)
    np.testing.assert_allclose(s.var_, dense.var_, rtol=RTOL)
    np.testing.assert_array_equal(s.n_samples_seen_, [200, 200, 199, 200])
    x[3, 2] = np.inf
    with pytest.raises(ValueError, match=r"infinity in feature\(s\) \['x2'\]"):
        s.transform(sparse.csr_matrix(x))


# ---------------------------------------------------------------------- output containers
def test_set_output_pandas_gives_a_dataframe_with_the_feature_names_and_the_inputs_index() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1.0, 2.0, 4.0], "b": [10.0, 0.0, 5.0]}, index=["r1", "r2", "r3"])
    s = Standardizer().set_output(transform="pandas")
    out = s.fit_transform(frame)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["a", "b"] and list(out.index) == ["r1", "r2", "r3"]
    np.testing.assert_allclose(out.to_numpy(), Standardizer().fit_transform(frame.to_numpy()))
    from_array = s.fit(frame.to_numpy()).transform(frame.to_numpy())
    assert list(from_array.columns) == ["x0", "x1"] and list(from_array.index) == [0, 1, 2]
    with pytest.warns(UserWarning, match="feature names"):  # as scikit-learn warns: names now, none at fit
        assert isinstance(s.inverse_transform(from_array), np.ndarray)  # as in scikit-learn: transform only
    assert s.set_output(transform=None).set_output(transform="default").transform(frame.to_numpy()).__class__ is (
        np.ndarray
    )
    with pytest.raises(ValueError, match=r"transform: got 'excel'; expected one of \['default', 'pandas', 'polars'\]"):
        Standardizer().set_output(transform="excel")


def test_pandas_output_of_sparse_data_is_refused_with_the_way_out() -> None:
    pytest.importorskip("pandas")
    s = Standardizer(with_mean=False).set_output(transform="pandas").fit(sparse_table())
    with pytest.raises(ValueError, match=r"Pandas output does not support sparse data\..*transform='default'"):
        s.transform(sparse.csr_matrix(sparse_table()))


@pytest.mark.slow  # scikit-learn's Pipeline and ColumnTransformer machinery
def test_pipeline_and_column_transformer_give_dataframes_locally_and_with_the_global_config() -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    from sklearn import config_context
    from sklearn.base import clone
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    frame = pd.DataFrame({"a": [1.0, 2.0, 4.0, 8.0], "b": [10.0, 0.0, 5.0, 1.0], "c": [0, 1, 0, 1]}, index=[7, 5, 3, 1])
    pipe = make_pipeline(Standardizer(), MinMaxScaler()).set_output(transform="pandas")
    out = pipe.fit_transform(frame)
    assert list(out.columns) == ["a", "b", "c"] and list(out.index) == [7, 5, 3, 1]
    columns = ColumnTransformer([("z", Standardizer(), ["a", "b"])], remainder="passthrough")
    with config_context(transform_output="pandas"):
        out = columns.fit_transform(frame)
        alone = Standardizer().fit(frame).transform(frame)
    assert list(out.columns) == ["z__a", "z__b", "remainder__c"] and list(out.index) == [7, 5, 3, 1]
    assert isinstance(alone, pd.DataFrame) and list(alone.columns) == ["a", "b", "c"]
    assert isinstance(Standardizer().fit(frame).transform(frame), np.ndarray)  # the config is back to default
    configured = clone(Standardizer().set_output(transform="pandas"))  # clone keeps the choice, as scikit-learn's
    assert isinstance(configured.fit_transform(frame), pd.DataFrame)


def test_a_table_is_standardized_the_same_when_dataframes_are_asked_for(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    (tmp_path / "t.csv").write_text("a,b\n1,10\n3,30\n")
    s = Standardizer().set_output(transform="pandas").fit_file(tmp_path / "t.csv")
    assert transform_table(s, tmp_path / "t.csv", tmp_path / "o.csv") == 2
    assert (tmp_path / "o.csv").read_text().splitlines() == ["a,b", "-1.0,-1.0", "1.0,1.0"]


def test_set_output_polars() -> None:
    pl = pytest.importorskip("polars")
    out = Standardizer().set_output(transform="polars").fit_transform(pl.DataFrame({"u": [1.0, 3.0], "v": [2.0, 2.5]}))
    assert isinstance(out, pl.DataFrame) and out.columns == ["u", "v"]
    np.testing.assert_allclose(out.to_numpy(), [[-1.0, -1.0], [1.0, 1.0]])


@pytest.mark.slow  # scikit-learn's Pipeline and ColumnTransformer machinery
def test_the_global_polars_output_reaches_a_pipeline_and_a_column_transformer() -> None:
    pl = pytest.importorskip("polars")
    pytest.importorskip("sklearn")
    from sklearn import config_context
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    frame = pl.DataFrame({"a": [1.0, 2.0, 4.0, 8.0], "b": [10.0, 0.0, 5.0, 1.0], "c": [0.0, 1.0, 0.0, 1.0]})
    with config_context(transform_output="polars"):
        piped = make_pipeline(Standardizer(), MinMaxScaler()).fit_transform(frame)
        columns = ColumnTransformer([("z", Standardizer(), ["a", "b"])], remainder="passthrough").fit_transform(frame)
    assert isinstance(piped, pl.DataFrame) and piped.columns == ["a", "b", "c"]
    assert isinstance(columns, pl.DataFrame) and columns.columns == ["z__a", "z__b", "remainder__c"]
    expected = Standardizer().fit_transform(frame.select("a", "b").to_numpy())
    np.testing.assert_allclose(columns.select("z__a", "z__b").to_numpy(), expected, rtol=1e-12)


# ---------------------------------------------------------------------- pandas nullable and pyarrow dtypes
@pytest.mark.parametrize("backend", ["numpy_nullable", "pyarrow"])
def test_pandas_na_counts_as_nan_refused_by_name_or_ignored(backend: str) -> None:
    pd = pytest.importorskip("pandas")
    if backend == "pyarrow":
        pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"age": [20, None, 40, 30], "income": [1.5, 2.5, 3.5, 4.5]}).convert_dtypes(
        dtype_backend=backend
    )
    assert frame["age"].isna().sum() == 1
    with pytest.raises(ValueError, match=r"NaN or infinity in feature\(s\) \['age'\]"):
        Standardizer().fit(frame)
    s = Standardizer(ignore_nan=True).fit(frame)
    reference = Standardizer(ignore_nan=True).fit(np.array([[20, 1.5], [np.nan, 2.5], [40, 3.5], [30, 4.5]]))
    np.testing.assert_array_equal(s.mean_, reference.mean_)
    np.testing.assert_array_equal(s.n_samples_seen_, [3, 4])
    out = s.transform(frame)
    assert np.isnan(out[1, 0]) and out.dtype == np.float64
    assert s.transform(frame.astype("Float32")).dtype == np.float32  # float32 of any flavour stays float32


def test_text_in_an_object_column_beside_pandas_na_is_still_named() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1.0, pd.NA, "n/a"]}, dtype=object)
    with pytest.raises(ValueError, match=r"X: expected numbers, got 'n/a' in feature 'a' \(row 2\)"):
        Standardizer(ignore_nan=True).fit(frame)


# ---------------------------------------------------------------------- exceptions scikit-learn code catches
def test_not_fitted_is_catchable_as_scikit_learns_and_as_value_and_attribute_error() -> None:
    sklearn_exceptions = pytest.importorskip("sklearn.exceptions")
    for error in (sklearn_exceptions.NotFittedError, NotFittedError, ValueError, AttributeError):
        with pytest.raises(error, match="This Standardizer instance is not fitted yet"):
            Standardizer().transform([[1.0]])
    from sklearn.utils.validation import check_is_fitted

    s = Standardizer()
    with pytest.raises(sklearn_exceptions.NotFittedError):
        check_is_fitted(s)
    check_is_fitted(s.fit([[1.0], [2.0]]))


def test_a_bad_parameter_is_scikit_learns_invalid_parameter_error() -> None:
    pytest.importorskip("sklearn")
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="The 'copy' parameter of Standardizer must be True or False"):
        Standardizer(copy="no").fit([[1.0]])  # type: ignore[arg-type]


def test_without_scikit_learn_the_errors_are_ours_alone() -> None:
    twin = errors._twin.__wrapped__  # the uncached lookup
    assert twin(NotFittedError, "preflight_no_such_module", "NotFittedError") is NotFittedError


# ---------------------------------------------------------------------- the array API boundary
@pytest.mark.torch
@pytest.mark.slow  # importing torch takes seconds
def test_torch_input_is_read_as_numpy_as_scikit_learn_does_without_array_api_dispatch() -> None:
    torch = pytest.importorskip("torch")
    x = torch.tensor([[1.0, 10.0], [3.0, 30.0]], dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = Standardizer().fit(x)
    assert type(s.mean_) is np.ndarray and s.mean_.dtype == np.float64
    out = s.transform(x)
    assert type(out) is np.ndarray and out.dtype == np.float32  # for tensors out: to_torch(), a module with buffers
    np.testing.assert_array_equal(out, [[-1.0, -1.0], [1.0, 1.0]])
