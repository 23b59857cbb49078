"""scikit-learn's metadata routing and callbacks reach Standardizer as they reach StandardScaler."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import cross_validate  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from preflight import Standardizer  # noqa: E402


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3)) * [1.0, 10.0, 100.0] + [5.0, -5.0, 50.0]
    return x, (x[:, 0] > 5.0).astype(int), rng.uniform(0.0, 2.0, 80)


@pytest.mark.parametrize(
    "request_",
    [{}, {"fit": True}, {"fit": "w", "partial_fit": False}, {"transform": True, "inverse_transform": None}],
    ids=repr,
)
def test_the_routing_requests_read_as_standard_scalers(request_: dict[str, object]) -> None:
    ours, theirs = Standardizer(), StandardScaler()
    with sklearn.config_context(enable_metadata_routing=True):
        for method, value in request_.items():
            param = "copy" if "transform" in method else "sample_weight"
            for estimator in (ours, theirs):
                getattr(estimator, f"set_{method}_request")(**{param: value})
        assert str(ours.get_metadata_routing()) == str(theirs.get_metadata_routing())
        assert str(clone(ours).get_metadata_routing()) == str(theirs.get_metadata_routing())


def test_a_pipeline_routes_sample_weight_to_the_standardizer_that_asked_for_it(data: tuple[np.ndarray, ...]) -> None:
    x, y, w = data
    with sklearn.config_context(enable_metadata_routing=True):
        model = make_pipeline(
            Standardizer().set_fit_request(sample_weight=True),
            LogisticRegression().set_fit_request(sample_weight=False).set_score_request(sample_weight=True),
        ).fit(x, y, sample_weight=w)
        np.testing.assert_allclose(model[0].mean_, StandardScaler().fit(x, sample_weight=w).mean_, rtol=1e-12)
        assert model[0].n_samples_seen_ == pytest.approx(w.sum(), rel=1e-12)
        scores = cross_validate(clone(model), x, y, params={"sample_weight": w}, cv=3)
        assert len(scores["test_score"]) == 3
        # Not asked: scikit-learn's own error, as for StandardScaler.
        unasked = make_pipeline(Standardizer(), LogisticRegression().set_fit_request(sample_weight=False))
        with pytest.raises(ValueError, match=r"\[sample_weight\] are passed but are not explicitly set"):
            unasked.fit(x, y, sample_weight=w)


def test_requests_need_routing_enabled_and_a_valid_value() -> None:
    with pytest.raises(RuntimeError, match="only available when metadata routing is enabled"):
        Standardizer().set_fit_request(sample_weight=True)
    with sklearn.config_context(enable_metadata_routing=True):
        with pytest.raises(ValueError, match=r"set_fit_request: sample_weight must be True, False, None or an alias"):
            Standardizer().set_fit_request(sample_weight=3)


class Recorder:
    """A scikit-learn FitCallback that records the hooks called."""

    def __init__(self) -> None:
        self.hooks: list[str] = []

    def setup(self, estimator: object, context: object) -> None:
        self.hooks.append("setup")

    def on_fit_task_begin(self, estimator: object, context: object, **kwargs: object) -> None:
        self.hooks.append("begin")

    def on_fit_task_end(self, estimator: object, context: object, **kwargs: object) -> None:
        self.hooks.append("end")

    def teardown(self, estimator: object, context: object) -> None:
        self.hooks.append("teardown")


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_callbacks_see_one_fit_task_and_a_pipeline_passes_its_own_down(
    method: str, data: tuple[np.ndarray, ...]
) -> None:
    pytest.importorskip("sklearn.callback")
    x, y, _ = data
    recorder = Recorder()
    s = getattr(Standardizer().set_callbacks(recorder), method)(x)
    assert recorder.hooks == ["setup", "begin", "end", "teardown"]
    assert clone(s)._skl_callbacks == [recorder] and not hasattr(s, "_callback_fit_ctx")
    with pytest.raises(TypeError, match="FitCallback protocol"):
        Standardizer().set_callbacks(3)
    from sklearn.callback import ProgressBar

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not "Standardizer does not support callbacks"
        make_pipeline(Standardizer(), LogisticRegression()).set_callbacks(ProgressBar()).fit(x, y)
