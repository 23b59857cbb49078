"""The ``preflight`` command: argparse front end over the library, no logic of its own.

Each subcommand lives in its own module here and offers ``register(subparsers)``; the handler it sets returns the
exit code. Bad input of any kind ends with exit code 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from preflight import __version__
from preflight._util.blas import one_blas_thread
from preflight._util.optional import MissingExtraError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Subcommand modules (preflight.cli.<name>), in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = ("tour", "experiment", "gradcheck", "normalize", "propagate")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error message (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> ArgumentParser:
    """The full parser with every subcommand registered."""
    parser = ArgumentParser(
        prog="preflight",
        description="Get a neural network ready to train, and prove it: normalize, initialize, diagnose, "
        "gradient-check.",
    )
    parser.add_argument("--version", action="version", version=f"preflight {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"preflight.cli.{name.replace('-', '_')}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``preflight`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # One BLAS thread unless the user chose (OMP_NUM_THREADS, ...): preflight's products are small, and on a
        # shared 2-core machine a second BLAS thread made `experiment depth` 1.9x slower (see preflight._blas).
        with one_blas_thread(respect_environment=True):
            code: int = args.handler(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        print("preflight: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``preflight ... | head``): not an error of ours; silence the flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError, OverflowError, MemoryError, MissingExtraError) as exc:
        # Bad input of every kind, files that cannot be read or written (a path through a file, no permission),
        # sizes too large to allocate: one line and exit code 2. Exit code 1 stays "the check failed".
        print(f"preflight {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    return code


def _one_line(exc: BaseException) -> str:
    """The first line of the exception's message, with what kind of problem it is where the message alone is bare."""
    text = str(exc).splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, MemoryError):
        return f"not enough memory ({text or 'the arrays asked for are too large'}); use smaller sizes"
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename!s}"  # not "[Errno 17] File exists: '...'"
    return text or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
