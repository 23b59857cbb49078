"""What the subcommands share: output options, output files, and printing a result as text or JSON."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from preflight._util import jsonsafe as strict_json

__all__ = [
    "OutputClosed",
    "add_output_options",
    "emit",
    "names_standard_output",
    "output",
    "output_file",
    "output_folder",
    "parse_sizes",
    "plain_text",
    "refuse_overwriting_inputs",
]


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


class OutputClosed(Exception):
    """Standard output was closed by its reader (``preflight ... | head``) once the exit ``code`` was known."""

    def __init__(self, code: int) -> None:
        super().__init__(f"standard output closed (exit code {code})")
        self.code = code


def add_output_options(parser: argparse.ArgumentParser, *, plot: bool = True) -> None:
    """Add ``--json`` and, when the command draws figures, ``--plot`` and ``--out``."""
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    if plot:
        parser.add_argument("--plot", action="store_true", help="also write PNG figures (needs the plot extra)")
        parser.add_argument(
            "--out",
            type=output_folder,
            default=Path("preflight-figures"),
            help="folder for figures (default ./preflight-figures)",
        )


def output_file(text: str) -> Path | str:
    """argparse type of a file to write: ``-`` stays ``"-"`` (standard output); an empty name is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a file name, got {text!r}")
    return "-" if text == "-" else Path(text)


def output_folder(text: str) -> Path:
    """argparse type of a folder to write into: an empty name is refused (not taken as the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder name, got {text!r}")
    return Path(text)


def names_standard_output(path: Path | str) -> bool:
    """Whether writing ``path`` writes to this process's standard output (``-``, ``/dev/stdout``, the file of ``>``)."""
    if path == "-":
        return True
    try:
        written, stdout = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # absent, stdout closed or not a real file (a test's capture)
        return False
    return (written.st_dev, written.st_ino) == (stdout.st_dev, stdout.st_ino)


def refuse_overwriting_inputs(path: Path | str, inputs: dict[str, Path]) -> None:
    """ValueError, before anything is written, when the output ``path`` is one of the ``inputs`` (by file identity:
    through symlinks, hard links and other spellings of the same path)."""
    if path == "-":
        return
    for what, given in inputs.items():
        try:
            same = os.path.samefile(path, given)
        except OSError:  # the output does not exist yet (or the input does not: that error comes when it is read)
            continue
        if same:
            raise ValueError(
                f"--output: {str(path)!r} is the {what} {str(given)!r}; writing it would destroy the input; "
                "choose another output file"
            )


def output(text: str, code: int, *, stream: IO[str] | None = None) -> int:
    """Print ``text`` (to stdout unless ``stream``) and return ``code``; a closed stdout keeps the code."""
    try:
        print(text, file=stream if stream is not None else sys.stdout)
        (stream if stream is not None else sys.stdout).flush()
    except BrokenPipeError:
        raise OutputClosed(code) from None
    return code


def emit(result: Any, args: argparse.Namespace, *, stream: IO[str] | None = None) -> int:
    """Print ``result`` (its table, or its JSON with --json), write its figures with --plot; exit code 0."""
    lines = []
    if getattr(args, "plot", False):
        written = result.plot(args.out)
        if not args.json:
            lines += [f"wrote {path}" for path in written]
    lines.append(strict_json.dumps(result.to_dict(), indent=2) if args.json else str(result))
    return output("\n".join(lines), 0, stream=stream)
