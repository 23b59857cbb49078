"""scikit-learn's own StandardScaler tests, run against Standardizer (issue #14).

Nothing is vendored: the tests are read from the installed scikit-learn (1.9.1; another version skips this module,
since the list of known differences below is for that one) at collection time, with the class swapped:

- ``sklearn/preprocessing/tests/test_data.py`` and ``sklearn/preprocessing/tests/test_common.py`` are executed as
  fresh module copies while ``sklearn.preprocessing.StandardScaler`` is :class:`Standardizer`, so their
  ``from sklearn.preprocessing import StandardScaler`` (and the parameter lists built at import) get ours. Every
  test whose source names StandardScaler is collected; where it is parametrized over several estimators, only the
  Standardizer cases are kept.
- ``sklearn/tests/test_common.py`` builds every scikit-learn estimator at import (slow), so its test functions are
  read from its source (bodies verbatim, decorators left out) and parametrized here the way it does, over the
  instances that contain a StandardScaler (StandardScaler, and the ColumnTransformer, FeatureUnion and Pipelines
  sklearn tests with one inside), with each StandardScaler replaced by a Standardizer of the same parameters.
  sklearn's per-estimator check parameters and expected failures for StandardScaler are registered for Standardizer.

Every test that still fails is in :data:`KNOWN_DIFFERENCES` with its reason (strict xfail: one that starts passing
fails the run, so the list stays exact). The array-API cases skip here (they need ``SCIPY_ARRAY_API=1`` and an
array-API library); Standardizer's boundary is documented in docs/guides/normalization.md.
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import importlib.util
import inspect
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any, ClassVar

import pytest

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("scipy")
# scikit-learn's test bodies, verbatim, do not expect the warnings Standardizer adds (a constant feature, a
# differing feature-name set): those are documented differences, not failures of the parity.
pytestmark = pytest.mark.filterwarnings("ignore::preflight.PreflightWarning")
if sklearn.__version__ != "1.9.1":
    pytest.skip(f"the known differences are for scikit-learn 1.9.1, got {sklearn.__version__}", allow_module_level=True)

import sklearn.preprocessing  # noqa: E402
from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler, StandardScaler  # noqa: E402
from sklearn.utils._test_common import instance_generator  # noqa: E402
from sklearn.utils.estimator_checks import estimator_checks_generator  # noqa: E402
from sklearn.utils.validation import has_fit_parameter  # noqa: E402

from preflight.normalize import Standardizer  # noqa: E402

_NAN = (
    "NaN: StandardScaler ignores NaN in fit and passes it through transform; Standardizer refuses it by default, "
    "naming the features, and does what StandardScaler does with ignore_nan=True (these tests pass so: the "
    "*_with_ignore_nan copies below)"
)
_NONE = (
    "mean_ and var_ are always fitted and set; StandardScaler sets var_ = None without with_std, and mean_ = None "
    "too when with_mean is also False"
)
_CALLBACKS = (
    "scikit-learn's experimental callback API (sklearn.callback, new in 1.9, private modules) is not implemented"
)
_ALL_NAN = (
    "a feature that is NaN in every row is refused by fit, naming it (StandardScaler fits it: mean_ and var_ NaN, "
    "scale_ 1)"
)
_SCALE_FUNCTION = (
    "the test calls sklearn's scale() function with the estimator's get_params(), which include ignore_nan: "
    "scale() takes no such argument"
)

#: The tests of scikit-learn 1.9.1 that Standardizer fails on purpose: node-name pattern -> (difference, error).
KNOWN_DIFFERENCES: dict[str, tuple[str, type[BaseException]]] = {
    "test_standard_scaler_sample_weight[*-Xw2-X2-sample_weight2]": (_NAN, ValueError),
    "test_scaler_n_samples_seen_with_nan[*]": (_NAN, ValueError),
    "test_standard_scaler_sparse_partial_fit_finite_variance[X_21]": (_NAN, ValueError),
    "test_standard_scaler_sparse_partial_fit_finite_variance[X_22]": (_NAN, ValueError),
    "test_missing_value_handling[*]": (_NAN, ValueError),
    "test_missing_value_pandas_na_support[*]": (_NAN, ValueError),
    "test_scaler_return_identity[*]": (_NONE, AssertionError),
    "test_standard_scaler_partial_fit": (_NONE, ValueError),  # `assert array == array` (sklearn's: None == None)
    "test_standard_scaler_callback_support[*]": (_CALLBACKS, AttributeError),
    "test_standard_scaler_sample_weight_with_ignore_nan[*-Xw2-X2-sample_weight2]": (_ALL_NAN, ValueError),
    "test_missing_value_handling_with_ignore_nan[*]": (_SCALE_FUNCTION, TypeError),
}
#: The sklearn tests about NaN, run a second time with ``ignore_nan=True`` (StandardScaler's NaN policy).
NAN_TESTS = (
    "test_standard_scaler_sample_weight",
    "test_scaler_n_samples_seen_with_nan",
    "test_standard_scaler_sparse_partial_fit_finite_variance",
    "test_missing_value_handling",
    "test_missing_value_pandas_na_support",
)


class StandardizerIgnoringNaN(Standardizer):
    """Standardizer with ``ignore_nan=True`` by default: what StandardScaler does with NaN."""

    PARAMETERS: ClassVar[dict[str, Any]] = {**Standardizer.PARAMETERS, "ignore_nan": True}

    def __init__(self, *, with_mean: bool = True, with_std: bool = True, copy: bool = True, ignore_nan: bool = True):
        super().__init__(with_mean=with_mean, with_std=with_std, copy=copy, ignore_nan=ignore_nan)


# ---------------------------------------------------------------------- the swap
@contextlib.contextmanager
def _standardizer_is_standard_scaler(swap: type[Standardizer]) -> Iterator[None]:
    original = sklearn.preprocessing.StandardScaler
    sklearn.preprocessing.StandardScaler = swap
    try:
        yield
    finally:
        sklearn.preprocessing.StandardScaler = original


def _swap(value: Any) -> Any:
    """``value`` with every StandardScaler in it (in a meta-estimator's parameters too) made a Standardizer."""
    if isinstance(value, StandardScaler):
        return Standardizer(**value.get_params())
    if isinstance(value, BaseEstimator):
        return type(value)(**{k: _swap(v) for k, v in value.get_params(deep=False).items()})
    if isinstance(value, (list, tuple)):
        return type(value)(_swap(v) for v in value)
    if isinstance(value, dict):
        return {k: _swap(v) for k, v in value.items()}
    return value


@contextlib.contextmanager
def _registered() -> Iterator[None]:
    """sklearn's per-estimator check parameters and expected failures, keyed by StandardScaler, for ours too."""
    params, xfails = instance_generator.PER_ESTIMATOR_CHECK_PARAMS, instance_generator.PER_ESTIMATOR_XFAIL_CHECKS
    saved = (dict(params), dict(xfails))
    params[Standardizer] = _swap(params[StandardScaler])
    params[FeatureUnion] = _swap(params[FeatureUnion])
    xfails[Standardizer] = dict(xfails.get(StandardScaler, {}))
    try:
        yield
    finally:
        params.clear()
        params.update(saved[0])
        xfails.clear()
        xfails.update(saved[1])


@pytest.fixture(autouse=True)
def _swapped_registry_and_known_differences(request: pytest.FixtureRequest) -> Iterator[None]:
    for pattern, (reason, error) in KNOWN_DIFFERENCES.items():
        if fnmatch.fnmatchcase(request.node.name, pattern.replace("[", "[[]")):  # "[" is literal in node names
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason, raises=error))
    with _registered():
        yield


# ---------------------------------------------------------------------- preprocessing tests: module copies
def _involves_ours(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_involves_ours(v) for v in value)
    values = getattr(value, "values", None)  # pytest.param(...)
    if isinstance(values, tuple) and hasattr(value, "marks"):
        return _involves_ours(values)
    return isinstance(value, Standardizer) or (isinstance(value, type) and issubclass(value, Standardizer))


def _keep_our_cases(function: Any) -> None:
    """In a parametrization over several estimators, keep only the Standardizer cases."""
    marks = []
    for mark in getattr(function, "pytestmark", []):
        if mark.name == "parametrize":
            names, values = mark.args[0], list(mark.args[1])  # a generator is read once: keep the list
            if any(_involves_ours(v) for v in values):
                assert not isinstance(mark.kwargs.get("ids"), list), function.__name__
                values = [v for v in values if _involves_ours(v)]
            mark = pytest.mark.parametrize(names, values, **mark.kwargs).mark
        marks.append(mark)
    function.pytestmark = marks


def _copy_of(name: str, swap: type[Standardizer] = Standardizer) -> ModuleType:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None and spec.origin is not None
    module = ModuleType(f"sklearn_parity.{name}")
    module.__file__ = spec.origin
    code = compile(open(spec.origin, encoding="utf-8").read(), spec.origin, "exec")
    with _standardizer_is_standard_scaler(swap), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(code, module.__dict__)
    return module


def _standard_scaler_tests(module: ModuleType) -> dict[str, Any]:
    tests = {}
    for name, function in vars(module).items():
        if (
            name.startswith("test_")
            and inspect.isfunction(function)
            and "StandardScaler" in inspect.getsource(function)
        ):
            _keep_our_cases(function)
            tests[name] = function
    return tests


_PREPROCESSING = ("sklearn.preprocessing.tests.test_data", "sklearn.preprocessing.tests.test_common")
for _name in _PREPROCESSING:
    globals().update(_standard_scaler_tests(_copy_of(_name)))
    globals().update(
        {
            f"{test}_with_ignore_nan": function
            for test, function in _standard_scaler_tests(_copy_of(_name, StandardizerIgnoringNaN)).items()
            if test in NAN_TESTS
        }
    )


# ---------------------------------------------------------------------- sklearn/tests/test_common.py
def _common_tests(names: list[str]) -> dict[str, Any]:
    """The named test functions of sklearn/tests/test_common.py, bodies verbatim, with the module's imports."""
    spec = importlib.util.find_spec("sklearn.tests.test_common")
    assert spec is not None and spec.origin is not None
    tree = ast.parse(open(spec.origin, encoding="utf-8").read(), spec.origin)
    body: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            body.append(node)
        elif isinstance(node, ast.FunctionDef) and node.name in names:
            node.decorator_list = []
            body.append(node)
    namespace: dict[str, Any] = {"__name__": "sklearn_parity.sklearn.tests.test_common"}
    exec(compile(ast.Module(body=body, type_ignores=[]), spec.origin, "exec"), namespace)
    missing = set(names) - set(namespace)
    assert not missing, missing
    return {name: namespace[name] for name in names}


#: sklearn's test instances (instance_generator) that contain a StandardScaler, and whether each is a transformer.
_ORIGINALS = [
    estimator
    for cls in (StandardScaler, ColumnTransformer, FeatureUnion, Pipeline)
    for estimator in instance_generator._construct_instances(cls)
    if "StandardScaler" in repr(estimator)
]
TESTED = [_swap(e) for e in _ORIGINALS]
TRANSFORMERS = [_swap(e) for e in _ORIGINALS if isinstance(e, TransformerMixin)]
WITH_FEATURE_NAMES_OUT = [_swap(e) for e in _ORIGINALS if hasattr(e, "get_feature_names_out")]
WITH_SAMPLE_WEIGHT = [_swap(e) for e in _ORIGINALS if has_fit_parameter(e, "sample_weight")]
#: SET_OUTPUT_ESTIMATORS adds one more instance with a StandardScaler: make_pipeline(StandardScaler(), MinMaxScaler()).
SET_OUTPUT = [*TRANSFORMERS, _swap(make_pipeline(StandardScaler(), MinMaxScaler()))]
_ids = instance_generator._get_check_estimator_ids


def _checks() -> list[Any]:
    """sklearn's own (estimator, check) cases for each original instance, the estimator in each case swapped."""
    cases = []
    for original in _ORIGINALS:
        expected = instance_generator._get_expected_failed_checks(original)
        for case in estimator_checks_generator(original, legacy=True, mark="xfail", expected_failed_checks=expected):
            if hasattr(
                case, "marks"
            ):  # pytest.param(estimator, check, marks=xfail): one of sklearn's expected failures
                cases.append(pytest.param(_swap(case.values[0]), case.values[1], marks=case.marks, id=case.id))
            else:
                cases.append((_swap(case[0]), case[1]))
    return cases


_COMMON = _common_tests(
    [
        "test_estimators",
        "test_pandas_column_name_consistency",
        "test_transformers_get_feature_names_out",
        "test_estimators_get_feature_names_out_error",
        "test_check_param_validation",
        "test_set_output_transform",
        "test_set_output_transform_configured",
        "test_check_inplace_ensure_writeable",
        "test_check_all_zero_sample_weights_error",
    ]
)
_SET_OUTPUT_CHECKS = [
    getattr(sklearn.utils.estimator_checks, name)
    for name in (
        "check_set_output_transform_pandas",
        "check_global_output_transform_pandas",
        "check_set_output_transform_polars",
        "check_global_set_output_transform_polars",
    )
]

test_estimators = pytest.mark.parametrize("estimator, check", _checks(), ids=_ids)(_COMMON["test_estimators"])
test_pandas_column_name_consistency = pytest.mark.parametrize("estimator_orig", TESTED, ids=_ids)(
    _COMMON["test_pandas_column_name_consistency"]
)
test_transformers_get_feature_names_out = pytest.mark.parametrize("transformer", TRANSFORMERS, ids=_ids)(
    _COMMON["test_transformers_get_feature_names_out"]
)
test_estimators_get_feature_names_out_error = pytest.mark.parametrize("estimator", WITH_FEATURE_NAMES_OUT, ids=_ids)(
    _COMMON["test_estimators_get_feature_names_out_error"]
)
test_check_param_validation = pytest.mark.parametrize("estimator", TESTED, ids=_ids)(
    _COMMON["test_check_param_validation"]
)
test_set_output_transform = pytest.mark.parametrize("estimator_orig", SET_OUTPUT, ids=_ids)(
    _COMMON["test_set_output_transform"]
)
test_set_output_transform_configured = pytest.mark.parametrize("estimator_orig", SET_OUTPUT, ids=_ids)(
    pytest.mark.parametrize("check_func", _SET_OUTPUT_CHECKS)(_COMMON["test_set_output_transform_configured"])
)
test_check_inplace_ensure_writeable = pytest.mark.parametrize("estimator", TESTED, ids=_ids)(
    _COMMON["test_check_inplace_ensure_writeable"]
)
test_check_all_zero_sample_weights_error = pytest.mark.parametrize("estimator", WITH_SAMPLE_WEIGHT, ids=_ids)(
    _COMMON["test_check_all_zero_sample_weights_error"]
)


# ------------------------------------------------ the figures in docs/guides/normalization.md
class _Tally:
    """Each test's outcome, for ``python <this file>``: the figures in docs/guides/normalization.md."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" and not (report.when == "setup" and report.skipped):
            return
        name = report.nodeid.split("::")[-1]
        ours = any(fnmatch.fnmatchcase(name, p.replace("[", "[[]")) for p in KNOWN_DIFFERENCES)
        if hasattr(report, "wasxfail"):
            outcome = ("known difference" if ours else "sklearn's own xfail") if report.skipped else "sklearn's xpass"
        else:
            outcome = report.outcome
        self.outcomes[name] = outcome

    def groups(self) -> dict[str, list[str]]:
        """Outcomes by group; the last takes each NaN test's outcome from its ignore_nan=True copy."""
        copy = "_with_ignore_nan"
        plain = {k: v for k, v in self.outcomes.items() if "array_api" not in k and copy not in k}
        with_copies = {
            k: self.outcomes.get(k.replace("[", f"{copy}[", 1) if "[" in k else k + copy, v) for k, v in plain.items()
        }
        return {
            "Standardizer as is": list(plain.values()),
            "ignore_nan=True copies of the NaN tests": [v for k, v in self.outcomes.items() if copy in k],
            "as is, NaN tests with ignore_nan=True": list(with_copies.values()),
            "array API": [v for k, v in self.outcomes.items() if "array_api" in k],
        }


if __name__ == "__main__":
    from preflight._util.text import format_table

    tally = _Tally()
    pytest.main([__file__, "-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts="], plugins=[tally])
    outcomes = ["passed", "known difference", "failed", "skipped", "sklearn's own xfail", "sklearn's xpass"]
    rows = []
    for group, seen in tally.groups().items():
        counts = [seen.count(o) for o in outcomes]
        judged = counts[0] + counts[1] + counts[2]
        rows.append([group, *counts, f"{100 * counts[0] / judged:.1f} %" if judged else ""])
    print(format_table(["tests", *outcomes, "passed / (passed + known + failed)"], rows))
