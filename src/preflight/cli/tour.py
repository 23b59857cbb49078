"""``preflight tour``: the whole toolkit, end to end, on real and generated data."""

from __future__ import annotations

import argparse
from typing import Any

from preflight.cli._common import add_output_options, emit
from preflight.tour import run_tour

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``tour`` command."""
    parser = subparsers.add_parser("tour", help="run the whole toolkit end to end and print what it finds")
    parser.add_argument("--quick", action="store_true", help="a reduced version (fewer iterations), for tests")
    add_output_options(parser)
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    return emit(run_tour(quick=args.quick), args)
