"""preflight's small matrix products run on one BLAS thread: in the library's checks, the tour and every command.

On a shared 2-core machine a second BLAS thread made ``preflight experiment depth`` 1.9x slower (measured, see
``preflight._blas``). The command line leaves BLAS alone when the user chose its threads with an environment variable.
"""

from __future__ import annotations

import argparse

import pytest

import preflight.cli as cli
from preflight._util.blas import THREAD_VARIABLES, one_blas_thread

threadpoolctl = pytest.importorskip("threadpoolctl")


def blas_threads() -> set[int]:
    return {int(i["num_threads"]) for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}


@pytest.fixture
def two_blas_threads():  # type: ignore[no-untyped-def]
    # The test session itself runs on one BLAS thread (conftest); give BLAS two so that a limit shows.
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        if blas_threads() != {2}:
            pytest.skip(f"BLAS would not take 2 threads here (has {blas_threads()})")
        yield


def test_one_blas_thread_limits_blas_inside_the_block_only(two_blas_threads: None) -> None:
    with one_blas_thread():
        assert blas_threads() == {1}
    assert blas_threads() == {2}


@pytest.mark.parametrize("variable", [None, *THREAD_VARIABLES])
def test_commands_run_on_one_blas_thread_unless_the_user_chose(
    two_blas_threads: None, monkeypatch: pytest.MonkeyPatch, variable: str | None
) -> None:
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if variable is not None:
        monkeypatch.setenv(variable, "2")
    seen: list[set[int]] = []

    def build_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="preflight")
        sub = parser.add_subparsers(dest="command", required=True)
        sub.add_parser("probe").set_defaults(handler=lambda args: seen.append(blas_threads()) or 0)
        return parser

    monkeypatch.setattr(cli, "build_parser", build_parser)
    assert cli.main(["probe"]) == 0
    assert seen == [{1} if variable is None else {2}]
