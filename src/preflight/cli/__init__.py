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
from preflight.cli._common import OutputClosed

__all__ = ["COMMANDS", "build_parser", "main"]

#: Subcommand modules (preflight.cli.<name>), in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = ("tour", "experiment", "gradcheck", "normalize", "propagate")
#: The longest error message printed whole: a line a terminal and a CI log can show (a message listing millions of
#: values would otherwise be printed as one line of megabytes).
MESSAGE_LIMIT = 2000


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
    """Entry point of the ``preflight`` command; returns the exit code.

    0: done (the check passed), 1: the check failed, 2: anything else (bad input, a file that cannot be read or
    written, the user's code exiting or raising), 130: interrupted. Whatever happens, one line on stderr and no
    traceback; a closed stdout or stderr changes nothing but where the text goes.
    """
    _reopen_closed_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    where = f"preflight {args.command}"
    try:
        # One BLAS thread unless the user chose (OMP_NUM_THREADS, ...): preflight's products are small, and on a
        # shared 2-core machine a second BLAS thread made `experiment depth` 1.9x slower (see preflight._blas).
        with one_blas_thread(respect_environment=True):
            code: int = args.handler(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        _say("preflight: interrupted")
        return 130
    except OutputClosed as closed:
        # The reader went away (``preflight ... | head``) after the result was known: its exit code stands.
        _silence_stdout()
        return closed.code
    except BrokenPipeError:
        _silence_stdout()
        _say(f"{where}: error: the output was closed before the command finished")
        return 2
    except (ValueError, OSError, OverflowError, MemoryError, RecursionError, MissingExtraError) as exc:
        # Bad input of every kind, files that cannot be read or written (a path through a file, no permission),
        # sizes too large to allocate: one line and exit code 2. Exit code 1 stays "the check failed".
        _say(f"{where}: error: {_one_line(exc)}")
        return 2
    except Exception as exc:
        # Anything else is a bug (ours or a library's): still one line and exit code 2, never the 1 of a traceback,
        # which would read as "the check failed".
        _say(f"{where}: internal error: {type(exc).__name__}: {_one_line(exc)} (please report it, with the command)")
        return 2
    return code


def _reopen_closed_streams() -> None:
    """Standard streams closed by the caller (``2>&-``, ``>&-``) become os.devnull.

    Python sets ``sys.stderr`` to None when descriptor 2 is closed at start; the descriptor itself is taken by
    os.devnull too, so that no file opened later lands on it (and receives what a library writes to "stderr").
    """
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        setattr(sys, name, open(os.devnull, "r" if fd == 0 else "w", encoding="utf-8"))


def _silence_stdout() -> None:
    """Point stdout at os.devnull, so that the flush at exit does not fail again on the closed pipe."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _say(line: str) -> None:
    """One line on stderr; nothing (and no second error) when stderr itself is closed or broken."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass


def _one_line(exc: BaseException) -> str:
    """The first line of the exception's message, with what kind of problem it is where the message alone is bare."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, RecursionError):
        return f"input nested too deeply to read ({text})"
    if isinstance(exc, MemoryError):
        return f"not enough memory ({text or 'the arrays asked for are too large'}); use smaller sizes"
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename!s}"  # not "[Errno 17] File exists: '...'"
    if len(text) > MESSAGE_LIMIT:
        text = f"{text[:MESSAGE_LIMIT]}... ({len(text):,} characters in all)"
    return text or type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
