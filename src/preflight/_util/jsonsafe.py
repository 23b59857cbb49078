"""Strict JSON out: what the command line prints with ``--json`` and the tour writes must parse everywhere.

Python's ``json`` writes ``NaN`` and ``Infinity``, which are not JSON (``jq`` and JavaScript's ``JSON.parse`` refuse
them). A value that is not finite (a noise estimate that overflowed, a ratio with a zero denominator) is written as
``null``; the text report keeps showing ``inf`` / ``nan``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["dumps", "finite_or_none"]


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth of dicts, lists and tuples) replaced by None.

    Examples
    --------
    >>> finite_or_none({"a": float("inf"), "b": [1.0, float("nan")], "c": "x"})
    {'a': None, 'b': [1.0, None], 'c': 'x'}
    """
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` of :func:`finite_or_none` ``(value)``, strict: it raises rather than write NaN.

    Examples
    --------
    >>> dumps({"noise": float("inf"), "passed": True})
    '{"noise": null, "passed": true}'
    """
    return json.dumps(finite_or_none(value), allow_nan=False, **options)
