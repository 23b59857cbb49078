"""What the subcommands share: output options and printing a result as text or JSON."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from preflight._util import jsonsafe as strict_json

__all__ = ["add_output_options", "emit", "parse_sizes", "plain_text"]


def plain_text(docstring: str | None) -> str | None:
    """A docstring paragraph for ``--help``: reStructuredText's double backticks and roles removed.

    Examples
    --------
    >>> plain_text("``preflight gradcheck`` checks :func:`gradcheck`")
    'preflight gradcheck checks gradcheck'
    """
    return None if docstring is None else re.sub(r":[a-z]+:`([^`]*)`", r"\1", docstring).replace("``", "")


def parse_sizes(values: Sequence[str | int]) -> list[int]:
    """``--sizes``: layer widths separated by commas, spaces or both (``64,100,10``, ``64 100 10``, ``64, 100, 10``).

    Raises ValueError naming the flag (the command exits 2 with one line).

    Examples
    --------
    >>> parse_sizes(["64,100", "10"]), parse_sizes(["64", "100", "10"]), parse_sizes([8, 16])
    ([64, 100, 10], [64, 100, 10], [8, 16])
    """
    words = [w for value in values for w in re.split(r"[,\s]+", str(value)) if w]
    try:
        sizes = [int(w) for w in words]
    except ValueError:
        text = " ".join(str(v) for v in values)
        raise ValueError(
            f"--sizes: expected integers separated by commas or spaces (64,100,10 or 64 100 10), got {text!r}"
        ) from None
    if not sizes:
        raise ValueError("--sizes: expected at least one layer width, got none")
    return sizes


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
