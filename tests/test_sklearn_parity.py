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
array-API library); Standardizer's boundary is documented in docs/guides/normalization.md, with the figures
``python tests/test_sklearn_parity.py`` prints (it also runs the same collection against StandardScaler itself).
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import importlib.util
import inspect
import json
import os
import subprocess
import sys
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

#: ``PARITY_BASELINE=1``: the same collection run against StandardScaler itself, for the figures' baseline row
#: (``python tests/test_sklearn_parity.py`` runs it so); no known difference applies then.
BASELINE = os.environ.get("PARITY_BASELINE") == "1"

_NAN = (
    "NaN: StandardScaler ignores NaN in fit and passes it through transform; Standardizer refuses it by default, "
    "naming the features, and does what StandardScaler does with ignore_nan=True (these tests pass so: the "
    "*_with_ignore_nan copies below)"
)
#: The tests of scikit-learn 1.9.1 that Standardizer fails on purpose: node-name pattern -> (difference, error).
KNOWN_DIFFERENCES: dict[str, tuple[str, type[BaseException]]] = {
    "test_standard_scaler_sample_weight[*-Xw2-X2-sample_weight2]": (_NAN, ValueError),
    "test_scaler_n_samples_seen_with_nan[*]": (_NAN, ValueError),
    "test_standard_scaler_sparse_partial_fit_finite_variance[X_21]": (_NAN, ValueError),
    "test_standard_scaler_sparse_partial_fit_finite_variance[X_22]": (_NAN, ValueError),
    "test_missing_value_handling[*]": (_NAN, ValueError),
    "test_missing_value_pandas_na_support[*]": (_NAN, ValueError),
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
    """Standardizer with ``ignore_nan=True``: StandardScaler's NaN policy, and StandardScaler's parameters exactly.

    ``ignore_nan`` is fixed rather than a parameter, so ``get_params()`` gives what StandardScaler's gives (a test
    passes them on to scikit-learn's ``scale()`` function).
    """

    PARAMETERS: ClassVar[dict[str, Any]] = {k: v for k, v in Standardizer.PARAMETERS.items() if k != "ignore_nan"}

    def __init__(self, *, with_mean: bool = True, with_std: bool = True, copy: bool = True):
        super().__init__(with_mean=with_mean, with_std=with_std, copy=copy, ignore_nan=True)


if BASELINE:
    Standardizer = StandardScaler  # type: ignore[assignment,misc]
    StandardizerIgnoringNaN = StandardScaler  # type: ignore[assignment,misc]


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
    for pattern, (reason, error) in {} if BASELINE else KNOWN_DIFFERENCES.items():
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


# ---------------------------------------------------------------------- the figures in the docs
class _Tally:
    """Each test's outcome, for ``python <this file>``: the figures in docs/guides/normalization.md."""

    def __init__(self) -> None:
        self.outcomes: dict[str, str] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" and not (report.when == "setup" and report.skipped):
            return
        # The baseline's ids name StandardScaler where ours name Standardizer: one name for both.
        name = report.nodeid.split("::")[-1].replace("StandardScaler", "Standardizer")
        ours = not BASELINE and any(fnmatch.fnmatchcase(name, p.replace("[", "[[]")) for p in KNOWN_DIFFERENCES)
        if hasattr(report, "wasxfail"):
            outcome = ("known difference" if ours else "sklearn's own xfail") if report.skipped else "sklearn's xpass"
        else:
            outcome = report.outcome
        self.outcomes[name] = outcome


COPY = "_with_ignore_nan"
OUTCOMES = ["passed", "sklearn's xpass", "known difference", "failed", "skipped", "sklearn's own xfail"]
PASSING = ("passed", "sklearn's xpass")


def _groups(outcomes: dict[str, str]) -> dict[str, dict[str, str]]:
    """Outcomes by group, array-API tests apart; one group takes each NaN test's outcome from its ignore_nan copy."""
    plain = {k: v for k, v in outcomes.items() if "array_api" not in k and COPY not in k}
    with_copies = {
        k: outcomes.get(k.replace("[", f"{COPY}[", 1) if "[" in k else k + COPY, v) for k, v in plain.items()
    }
    return {
        "as is": plain,
        "NaN tests with ignore_nan=True": with_copies,
        "array API (not run: SCIPY_ARRAY_API)": {k: v for k, v in outcomes.items() if "array_api" in k},
    }


def _row(label: str, seen: dict[str, str], baseline: dict[str, str]) -> list[Any]:
    """Counts; passed / collected (array-API tests apart); the share of StandardScaler's passes passed here too."""
    counts = [list(seen.values()).count(o) for o in OUTCOMES]
    passed = counts[0] + counts[1]
    theirs = [k for k in seen if baseline.get(k) in PASSING]
    both = sum(seen[k] in PASSING for k in theirs)
    share = f"{100 * passed / len(seen):.1f} %" if passed else ""
    relative = f"{both} of {len(theirs)} ({100 * both / len(theirs):.1f} %)" if both else ""
    return [label, len(seen), *counts, share, relative]


def main() -> None:
    """Run this file under pytest, tally every outcome, and print the table (the baseline run as a subprocess)."""
    tally = _Tally()
    pytest.main([__file__, "-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts="], plugins=[tally])
    if BASELINE:
        print(json.dumps(tally.outcomes))
        return
    from preflight._util.text import format_table

    run = subprocess.run(
        [sys.executable, __file__], env={**os.environ, "PARITY_BASELINE": "1"}, capture_output=True, text=True
    )
    baseline: dict[str, str] = json.loads(run.stdout.strip().splitlines()[-1])
    ours, theirs = _groups(tally.outcomes), _groups(baseline)
    rows = [
        _row("StandardScaler itself", theirs["as is"], baseline),
        _row("Standardizer as is", ours["as is"], baseline),
        _row("Standardizer, NaN tests with ignore_nan=True", ours["NaN tests with ignore_nan=True"], baseline),
        _row("array API (SCIPY_ARRAY_API unset: skipped)", ours["array API (not run: SCIPY_ARRAY_API)"], baseline),
    ]
    headers = ["scikit-learn 1.9.1's tests", "collected", *OUTCOMES, "passed / collected", "of StandardScaler's passes"]
    print(format_table(headers, rows, title="passed counts sklearn's xpass (a check sklearn expects to fail, passing)"))


if __name__ == "__main__":
    main()
