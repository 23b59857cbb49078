"""``preflight experiment NAME``: run one of the course / paper reproductions."""

from __future__ import annotations

import argparse
from typing import Any

from preflight.cli._common import add_output_options, emit
from preflight.experiments import EXPERIMENTS, load

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``experiment`` command with one sub-command per registered experiment."""
    parser = subparsers.add_parser("experiment", help="run a reproduction of the course or a paper")
    names = parser.add_subparsers(dest="experiment", metavar="NAME", required=True)
    for name in EXPERIMENTS:
        module = load(name)
        sub = names.add_parser(name, help=module.SUMMARY, description=module.SUMMARY)
        module.add_arguments(sub)
        add_output_options(sub)
        sub.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    module = load(args.experiment)
    skip = {"command", "experiment", "handler", "json", "plot", "out"}
    options = {key: value for key, value in vars(args).items() if key not in skip}
    return emit(module.run(**options), args)
