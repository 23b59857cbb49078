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
    with one_blas_thread(respect_environment=False):
        assert blas_threads() == {1}
        with one_blas_thread(respect_environment=False):  # nested: no change, and none undone on the way out
            assert blas_threads() == {1}
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


def _probes() -> dict[str, object]:
    """Library calls, each with a way to see the BLAS threads from inside it."""
    import numpy as np

    from preflight import gradcheck, propagation
    from preflight.nn import Network

    rng = np.random.default_rng(0)
    net = Network([4, 8, 3], hidden="tanh", output="softmax")
    params = net.init(0, "glorot")
    X, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    seen: list[set[int]] = []

    def fit() -> None:
        net.fit(params, X, y, learning_rate=0.1, iterations=1, callbacks=[lambda *_: seen.append(blas_threads())])

    def check() -> None:
        w = {"w": np.ones(3)}
        gradcheck(lambda p: seen.append(blas_threads()) or float(np.sum(p["w"] ** 2)), w, lambda p: {"w": 2 * p["w"]})

    class Traced(Network):
        def trace(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(blas_threads())
            return super().trace(*args, **kwargs)

    def analyze() -> None:
        traced = Traced([4, 8, 3], hidden="tanh", output="softmax")
        propagation.analyze(traced, params, X, y, warn=False)

    return {"seen": seen, "Network.fit": fit, "gradcheck": check, "propagation.analyze": analyze}


@pytest.mark.parametrize("call", ["Network.fit", "gradcheck", "propagation.analyze"])
@pytest.mark.parametrize("variable", [None, "OMP_NUM_THREADS"])
def test_library_calls_run_on_one_blas_thread_unless_the_user_chose(
    two_blas_threads: None, monkeypatch: pytest.MonkeyPatch, call: str, variable: str | None
) -> None:
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    if variable is not None:
        monkeypatch.setenv(variable, "2")
    probes = _probes()
    probes[call]()  # type: ignore[operator]
    seen = probes["seen"]
    assert seen and all(s == ({1} if variable is None else {2}) for s in seen)  # type: ignore[union-attr]
    assert blas_threads() == {2}  # the caller's setting is back


def test_a_variable_set_to_one_still_gets_one_thread(two_blas_threads: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # Dask's LocalCluster sets OMP_NUM_THREADS=1 in the client's environment after BLAS started with two threads:
    # one thread is what the variable asks for, so the library limits BLAS as without it.
    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    probes = _probes()
    probes["gradcheck"]()  # type: ignore[operator]
    assert probes["seen"] and all(s == {1} for s in probes["seen"])  # type: ignore[union-attr]
    assert blas_threads() == {2}
