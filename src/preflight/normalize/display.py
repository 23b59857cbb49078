"""The Standardizer in a notebook: its parameters and, once fitted, a summary of the fitted statistics.

Like scikit-learn's estimator HTML view: the constructor's parameters, a fitted / not fitted badge, and what was
learned (per feature its mean, standard deviation and the scale ``transform`` divides by; constant features, which
get scale 1, flagged).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from preflight._util import html
from preflight._util.text import Table

__all__ = ["MAX_FEATURES", "standardizer_html", "statistics_table"]

#: Features listed in the notebook view; the rest are counted (``str(statistics_table(s))`` lists all).
MAX_FEATURES = 12


def statistics_table(standardizer: Any) -> Table:
    """Per feature: mean, standard deviation, the scale ``transform`` divides by, and a note for constant ones.

    Examples
    --------
    >>> from preflight.normalize.standardizer import Standardizer
    >>> print(statistics_table(Standardizer().fit(np.array([[1.0, 5.0], [3.0, 5.0]]))))  # x1 is constant: it warns
    Fitted statistics (float64)
    <BLANKLINE>
    feature | mean | std | scale | note
    --------+------+-----+-------+------------------
    x0      |    2 |   1 |     1 |
    x1      |    5 |   0 |     1 | constant: scale 1
    """
    s = standardizer
    # The fitted statistics, also where scikit-learn's convention leaves mean_ or var_ None (with_std=False).
    moments = s._moments
    empty = moments.count == 0
    mean = np.where(empty, np.nan, moments.mean)
    std = np.where(empty, np.nan, np.sqrt(moments.variance))
    scale = s.scale_ if s.scale_ is not None else np.ones_like(std)

    def note(empty: bool, d: float, f: float) -> str:
        if empty:
            return "no values: NaN"
        return "constant: scale 1" if s.scale_ is not None and d != f else ""

    rows = [
        [str(name), float(m), float(d), float(f), note(bool(e), float(d), float(f))]
        for name, m, d, f, e in zip(s.get_feature_names_out(), mean, std, scale, empty, strict=True)
    ]
    return Table(["feature", "mean", "std", "scale", "note"], rows, title="Fitted statistics (float64)")


def standardizer_html(standardizer: Any) -> str:
    """The notebook view of a Standardizer (fitted or not)."""
    s = standardizer
    params = Table(["parameter", "value"], [[k, repr(v)] for k, v in s.get_params().items()])
    blocks = [html.details("parameters", html.html_table(params))]
    if not s.__sklearn_is_fitted__():
        return html.panel(repr(s), html.badge("not fitted"), blocks)
    seen = s.n_samples_seen_
    samples = f"{int(seen):,}" if np.ndim(seen) == 0 else f"{int(np.min(seen)):,} to {int(np.max(seen)):,}"
    table = statistics_table(s)
    constant = sum(1 for row in table.rows if row[-1])
    status = html.badge("fitted")
    if constant:
        status += " " + html.badge(f"{constant} constant feature{'s' if constant > 1 else ''}", "warn")
    blocks.append(html.html_table(table, max_rows=MAX_FEATURES))
    subtitle = f"{samples} samples, {s.n_features_in_} features"
    return html.panel(repr(s), status, blocks, subtitle=subtitle)
