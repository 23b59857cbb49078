"""Every result object renders in a notebook: a one-line repr, and an HTML view with the same cells as ``str()``.

The HTML view of each object is checked against its own text view: every cell of the text table is in the HTML,
outcome words are badges coloured by the outcome, and a figure is inlined where matplotlib is installed (and left
out, without an error, where it is not).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from preflight import Standardizer, propagation
from preflight._util import figures, html
from preflight._util.jsonsafe import finite_or_none
from preflight._util.text import Table
from preflight.experiments import load
from preflight.nn import Network
from preflight.report.html import Finding
from preflight.tour import Tour, TourSection

GOOD, BAD = html.TONE_COLOURS["good"][0], html.TONE_COLOURS["bad"][0]


def cells(text: str) -> set[str]:
    """The body cells of every aligned table in a text view (headers such as ``|dL/dZ|`` hold the separator)."""
    lines = text.splitlines()
    pairs = zip(lines, [*lines[1:], ""], strict=True)
    body = [line for line, after in pairs if " | " in line and not re.fullmatch(r"[-+]+", after)]
    return {c.strip() for line in body for c in line.split(" | ") if c.strip()}


def assert_notebook_ready(obj: object, *, max_repr: int = 240) -> str:
    text = repr(obj)
    assert "\n" not in text and len(text) <= max_repr, text
    page = obj._repr_html_()  # type: ignore[attr-defined]
    unescaped = page.replace("&#x27;", "'").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    missing = {c for c in cells(str(obj)) if f">{c}<" not in unescaped}
    assert not missing, sorted(missing)[:10]
    return page


@pytest.fixture(scope="module")
def vanishing_report() -> propagation.PropagationReport:
    rng = np.random.default_rng(0)
    net = Network([64] * 16 + [4], hidden="relu", output="softmax")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", propagation.PropagationWarning)
        return propagation.analyze(net, net.init(1, "lecun"), rng.standard_normal((64, 64)), rng.integers(0, 4, 64))


def test_propagation_report(vanishing_report: propagation.PropagationReport) -> None:
    assert repr(vanishing_report).startswith("<PropagationReport vanishing (vanishing in layers ")
    page = assert_notebook_ready(vanishing_report)
    assert BAD in page and "recommended init: he" in page
    assert ("data:image/png;base64," in page) == figures.has_matplotlib()
    assert json.loads(vanishing_report.to_json()) == json.loads(json.dumps(finite_or_none(vanishing_report.to_dict())))


def test_without_matplotlib_the_table_still_renders(vanishing_report, monkeypatch) -> None:
    monkeypatch.setattr(figures, "has_matplotlib", lambda: False)
    page = vanishing_report._repr_html_()
    assert "<table" in page and "<img" not in page


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("depth", {"quick": True, "iterations": 0, "width": 32, "batch": 16, "depth": 12}),
        ("init-schemes", {"iterations": 200, "record_every": 100}),
        ("normalization", {"max_iterations": 300}),
        ("numdiff", {"points": 6}),
    ],
)
def test_experiment_results(name: str, options: dict) -> None:
    result = load(name).run(**options)
    page = assert_notebook_ready(result)
    assert repr(result).startswith(f"<{type(result).__name__}: ")
    # to_json is to_dict as strict JSON: what is not finite (numdiff's slope with too few points) becomes null.
    assert isinstance(result.to_dict(), dict)
    assert json.loads(result.to_json()) == json.loads(json.dumps(finite_or_none(result.to_dict())))
    if name == "depth":
        assert GOOD in page and BAD in page  # healthy and vanishing rows


def test_standardizer_fitted_and_not() -> None:
    unfitted = Standardizer(ignore_nan=True)
    page = unfitted._repr_html_()
    assert "Standardizer(ignore_nan=True)" in page and "not fitted" in page
    X = np.column_stack([np.arange(40.0), np.full(40, 3.0)] + [np.arange(40.0) ** k for k in range(2, 16)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = Standardizer().fit(X)
    page = fitted._repr_html_()
    assert "fitted" in page and "40 samples, 16 features" in page
    assert "1 constant feature" in page and "constant: scale 1" in page
    assert "4 more rows" in page  # 16 features, 12 shown


def test_tour(tmp_path: Path) -> None:
    section = TourSection(
        key="demo",
        title="Demo",
        intro="",
        text=str(Table(["a", "verdict"], [[1, "vanishing"]])),
        figures=[],
        summary={},
        findings=[Finding("tanh, N(0, 0.01^2)", "vanishing", True, "theory: vanishing")],
        lessons={"a lesson": True},
    )
    tour = Tour([section], tmp_path, 1.5, quick=True)
    assert re.fullmatch(r"<Tour --quick: 1 sections, 1 of 1 lessons held, 1 of 1 demonstrations .*>", repr(tour))
    page = tour._repr_html_()
    assert "every lesson held" in page and BAD in page and "&#10003;" in page
    assert json.loads(tour.to_json())["lessons"] == {"a lesson": True}


def test_badges_take_the_outcome_colour() -> None:
    assert GOOD in html.badge("healthy") and BAD in html.badge("saturated") and BAD in html.badge("FAIL")
    assert html.TONE_COLOURS["neutral"][0] in html.badge("relu")
