"""Reproductions of the course's exercises and the papers' experiments, one module each.

Every experiment module offers ``SUMMARY`` (one line), ``add_arguments(parser)`` for its command-line options, and
``run(**options)`` returning a result (a :class:`preflight.experiments.result.ResultView`) with ``str()`` (its
tables), ``repr()`` (one line), ``_repr_html_()`` (the tables and a figure in a notebook), ``to_dict()`` (a dict),
``to_json()`` (its JSON text) and ``plot(directory)`` (PNG files written, needs the ``plot`` extra).
``preflight experiment NAME`` runs one.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from preflight._util.validation import check_choice

__all__ = ["EXPERIMENTS", "ExperimentResult", "load"]

#: Experiment name (as typed on the command line) -> module.
EXPERIMENTS: dict[str, str] = {
    "init-schemes": "preflight.experiments.init_schemes",
    "depth": "preflight.experiments.depth",
    "numdiff": "preflight.experiments.numdiff",
    "normalization": "preflight.experiments.normalization",
    "training-health": "preflight.experiments.training_health",
}


class ExperimentResult(Protocol):
    """What an experiment's ``run`` returns."""

    def to_dict(self) -> dict[str, Any]: ...

    def to_json(self, *, indent: int | None = None) -> str: ...

    def plot(self, directory: Path) -> list[Path]: ...


class Experiment(Protocol):
    """What an experiment module offers."""

    SUMMARY: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, **options: Any) -> ExperimentResult: ...


def load(name: str) -> ModuleType:
    """Import the experiment called ``name``.

    Examples
    --------
    >>> load("init-schemes").SUMMARY.split()[0]
    'The'
    """
    return importlib.import_module(EXPERIMENTS[check_choice(name, name="experiment", allowed=EXPERIMENTS)])
