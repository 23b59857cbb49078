"""Every docstring example in preflight runs and prints what it says (the style guide asks for runnable examples).

One test per module. A module whose optional extra is not installed (torch, dask, ...) is skipped by name; an
example may opt out with ``# doctest: +SKIP`` only where it takes too long to run here.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import warnings

import pytest

import preflight
from preflight._util.optional import MissingExtraError

# preflight.__main__ is left out: importing it runs the command line.
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(preflight.__path__, prefix="preflight.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run_as_written(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except (ImportError, MissingExtraError) as exc:
        pytest.skip(f"{name} needs an optional extra: {exc}")
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with warnings.catch_warnings():
        # Some examples show inputs that warn (a constant feature); the warning is not part of the printed output.
        warnings.simplefilter("ignore")
        report: list[str] = []
        for test in finder.find(module, name):
            runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)
