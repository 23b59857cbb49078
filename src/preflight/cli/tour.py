"""``preflight tour``: the whole toolkit, end to end, written up as a report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from preflight.tour import run_tour

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add the ``tour`` command."""
    parser = subparsers.add_parser(
        "tour", help="run the whole toolkit end to end and write a report (report.html, figures, summary.json)"
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("preflight-report"), help="report folder")
    parser.add_argument("--quick", action="store_true", help="a reduced version (fewer iterations), for tests")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of the tables")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    tour = run_tour(args.output, quick=args.quick)
    print(tour.to_json(indent=2) if args.json else str(tour))
    return 0
