"""Shared fixtures for the test suite."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from preflight.nn import Network

from .oracle import labels_for


@pytest.fixture(scope="session", autouse=True)
def one_blas_thread():
    """Run the suite with one BLAS thread: the tests use small matrices, where a multithreaded BLAS only adds
    synchronisation (measured here: a 64x128 product took 40 ms instead of 0.2 ms on a loaded 2-core machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """Where a test has imported torch: seeded, and one intra-op thread, for the same reason as the BLAS limit
    (tiny tensors; on a busy 2-core machine OpenMP's spinning threads made them ~100x slower)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # tests that draw from torch's global generator see the same numbers in any order
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_problem() -> Callable[..., tuple[Network, dict[str, np.ndarray], np.ndarray, np.ndarray]]:
    """Factory: a small network, its parameters and a batch, for any activation / head / dtype."""

    def make(
        hidden: Any = "tanh",
        output: str = "softmax",
        dtype: Any = np.float64,
        *,
        l2: float = 0.0,
        keep_prob: float = 1.0,
        sizes: tuple[int, ...] = (4, 5, 3, 3),
        m: int = 7,
        seed: int = 0,
    ) -> tuple[Network, dict[str, np.ndarray], np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        net = Network(list(sizes), hidden=hidden, output=output, l2=l2, keep_prob=keep_prob)
        params = net.init(rng, "glorot", dtype=dtype)
        params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(dtype) for k, v in params.items()}
        X = rng.standard_normal((m, sizes[0]))
        y = labels_for(output, m, sizes[-1], rng)
        return net, params, X, y

    return make
