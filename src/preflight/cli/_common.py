"""What the subcommands share: output options and printing a result as text or JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from preflight._util import jsonsafe as strict_json

__all__ = ["add_output_options", "emit"]


def add_output_options(parser: argparse.ArgumentParser, *, plot: bool = True) -> None:
    """Add ``--json`` and, when the command draws figures, ``--plot`` and ``--out``."""
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    if plot:
        parser.add_argument("--plot", action="store_true", help="also write PNG figures (needs the plot extra)")
        parser.add_argument(
            "--out",
            type=Path,
            default=Path("preflight-figures"),
            help="folder for figures (default ./preflight-figures)",
        )


def emit(result: Any, args: argparse.Namespace) -> int:
    """Print ``result`` (its table, or its JSON with --json), write its figures with --plot; exit code 0."""
    if getattr(args, "plot", False):
        written = result.plot(args.out)
        if not args.json:
            print("\n".join(f"wrote {path}" for path in written))
    print(strict_json.dumps(result.to_dict(), indent=2) if args.json else str(result))
    return 0
