"""gradcheck(client=...): the perturbed losses on a Dask LocalCluster of 2 worker processes give the same report as
the local check, bit for bit for the black box; the noise and the verdict stay on the caller's side."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import preflight
from preflight.check.distributed import DistributedLoss, check_client, task_size
from preflight.nn import Network

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    # Worker processes, one thread each: each worker rebuilds the loss and its own copy of the parameters.
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def _same(local: Any, remote: Any) -> None:
    a, b = local.to_dict(), remote.to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def _problem(hidden: str = "tanh") -> tuple[Network, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    net = Network([6, 8, 5, 3], hidden=hidden, output="softmax", l2=0.01)
    rng = np.random.default_rng(0)
    params = {n: v + 0.1 * rng.standard_normal(v.shape) for n, v in net.init(rng).items()}
    return net, params, rng.standard_normal((10, 6)), rng.integers(0, 3, 10)


@pytest.mark.slow  # a LocalCluster of 2 processes: seconds to start
def test_black_box_bit_for_bit(client: Any) -> None:
    net, params, X, y = _problem()
    saved = {n: v.copy() for n, v in params.items()}
    grads = net.gradients(params, X, y)

    def loss(p: dict[str, np.ndarray]) -> float:
        return net.cost(p, X, y)

    local = preflight.gradcheck(loss, params, grads, progress=False)
    remote = preflight.gradcheck(loss, params, grads, progress=False, client=client)
    _same(local, remote)
    assert remote.passed and remote.evaluations == local.evaluations
    assert all(np.array_equal(params[n], saved[n]) for n in params)  # the caller's arrays were never moved


@pytest.mark.slow  # a LocalCluster of 2 processes: seconds to start
def test_black_box_bug_same_verdict_and_hints(client: Any) -> None:
    net, params, X, y = _problem()
    grads = net.gradients(params, X, y)
    grads["W2"] = grads["W2"] * 2.0
    local = preflight.gradcheck(lambda p: net.cost(p, X, y), params, grads, progress=False)
    remote = preflight.gradcheck(lambda p: net.cost(p, X, y), params, grads, progress=False, client=client)
    assert not remote.passed and remote.hints == local.hints
    _same(local, remote)


@pytest.mark.slow  # a LocalCluster of 2 processes: seconds to start
def test_network_check_on_the_cluster(client: Any) -> None:
    net, params, X, y = _problem("sigmoid")
    local = preflight.nn.gradcheck(net, params, X, y, progress=False)
    remote = preflight.nn.gradcheck(net, params, X, y, progress=False, client=client)
    assert remote.passed == local.passed and remote.noise == local.noise
    for name, result in local.parameters.items():
        # Batches of other sizes round the rank-one products differently: equal to a few ulps of the differences.
        assert remote.parameters[name].difference == pytest.approx(result.difference, rel=1e-6, abs=1e-15)


@pytest.mark.slow  # a LocalCluster of 2 processes: seconds to start
def test_module_check_on_the_cluster(client: Any) -> None:
    torch = pytest.importorskip("torch")
    from preflight.torch import check_module

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    batch = (torch.randn(9, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2]))
    local = check_module(model, torch.nn.functional.cross_entropy, batch, progress=False)
    remote = check_module(model, torch.nn.functional.cross_entropy, batch, progress=False, client=client)
    assert remote.passed and local.passed and remote.noise == local.noise
    for name, result in local.parameters.items():
        assert remote.parameters[name].difference == pytest.approx(result.difference, rel=1e-6, abs=1e-15)


@pytest.mark.slow  # a LocalCluster of 2 processes: seconds to start
def test_the_loss_is_shipped_once_per_worker_and_tasks_carry_ranges(client: Any) -> None:
    w = np.linspace(-1.0, 1.0, 1000)
    evaluator = DistributedLoss(
        client, lambda: preflight.check.BlackBoxLoss(np.sum, w, {"w": w}), float(np.sum(w)), 1e-3
    )
    steps = np.full(1000, 0.5)
    costs = evaluator({"w": steps})["w"]
    np.testing.assert_array_equal(costs, np.sum(w) + 0.5)  # every coordinate moved once by 0.5 (exact sums)
    assert evaluator.tasks == 5  # 1000 coordinates in ranges of task_size(1e-3, 1000, 2) = 200
    # One broadcast payload, and every task found it on its worker (the key is the same future).
    assert len(client.who_has(evaluator.payload)[evaluator.payload.key]) == 2


@pytest.mark.parametrize("bad", ["tcp://127.0.0.1:8786", 4, None.__class__])
def test_bad_client_names_the_argument(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"^client: expected a dask\.distributed\.Client"):
        preflight.gradcheck(lambda p: float(np.sum(p**2)), np.ones(3), 2 * np.ones(3), client=bad)
    with pytest.raises(ValueError, match=r"^client: expected"):
        check_client(bad)


def test_task_size_keeps_the_overhead_under_five_percent() -> None:
    # TASK_OVERHEAD 10 ms over 5 % of a task: 0.2 s of work per task at least, unless the tensor is small.
    assert task_size(1e-3, 10**7, 4) == 200 and task_size(1e-3, 150, 4) == 38 and task_size(10.0, 10**7, 4) == 1


@pytest.mark.slow  # a LocalCluster of 2 processes: seconds to start
def test_a_fallback_taken_on_a_worker_reaches_the_reports_notes(client: Any) -> None:
    torch = pytest.importorskip("torch")
    from preflight.torch import check_module

    class Signed(torch.nn.Module):
        """Multiplies by a learnt scale, choosing the sign with ``.item()``: vmap refuses it only when the scale is
        the perturbed tensor, so the client's timing probe (on the largest tensor) keeps vmap and the workers fall
        back."""

        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor([0.7], dtype=torch.float64))

        def forward(self, x: Any) -> Any:
            return x * self.scale if self.scale.item() > 0 else -x * self.scale

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), Signed(), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    batch = (torch.randn(9, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2]))
    loss = torch.nn.functional.cross_entropy
    local = check_module(model, loss, batch, progress=False, strategy="vmap")
    remote = check_module(model, loss, batch, progress=False, strategy="vmap", client=client)
    for report in (local, remote):
        assert report.passed, str(report)
        assert report.notes[0].startswith("strategy: loop") and "vmap failed on this model" in report.notes[0]


@pytest.mark.slow  # a LocalCluster of 2 processes: seconds to start
def test_a_loss_failing_on_a_worker_raises_on_the_caller_as_it_would_locally(client: Any) -> None:
    def loss(w: np.ndarray) -> float:
        return float(np.sum(w**2)) if abs(w[7] - 0.5) < 1e-9 else float("nan")  # NaN once w[7] moves

    w = np.linspace(-1.0, 1.0, 40)
    w[7] = 0.5
    kept = w.copy()
    errors = []
    for where in (None, client):
        with pytest.raises(ValueError) as caught:
            preflight.gradcheck(loss, w, 2 * w, progress=False, client=where)
        errors.append(str(caught.value))
        np.testing.assert_array_equal(w, kept)  # the caller's parameters as they were
    assert "[7]" in errors[0] and errors[0] == errors[1]


def _profiler_state_in_a_task() -> tuple[bool, bool]:
    """In a task on a worker: is the worker's profiler running inside profiler_paused, and again after it?"""
    import time

    from distributed import get_worker

    from preflight.check.distributed import profiler_paused

    worker = get_worker()
    callback = worker.periodic_callbacks["profile"]
    with profiler_paused(worker):
        time.sleep(0.2)  # the event loop runs the stop it was handed
        inside = callback.is_running()
    time.sleep(0.2)
    return inside, callback.is_running()


@pytest.mark.slow  # a LocalCluster of 2 processes: seconds to start
def test_the_workers_profiler_pauses_for_the_perturbed_losses_only(client: Any) -> None:
    inside, after = client.submit(_profiler_state_in_a_task, pure=False).result()
    assert (inside, after) == (False, True)
