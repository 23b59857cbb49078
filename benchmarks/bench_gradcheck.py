"""Full gradient check of an MLP, float64, batch 64, every coordinate two-sided: preflight against torch and NumPy.

Side by side, in one run, on the same network and parameter values:

- ``torch.autograd.gradcheck(fast_mode=False)`` on a torch function computing the same cost from the flat parameters;
- the textbook NumPy loop (copy theta per coordinate, eps = 1e-7, central differences);
- ``scipy.optimize.check_grad`` (one-sided differences, so half the evaluations, and only an absolute norm back);
- preflight's black-box check (``preflight.gradcheck`` on ``net.cost``), against its floor of 2 x P loss evaluations;
- preflight's structure-aware check (``preflight.nn.gradcheck``).

Every tool runs on one thread (``--threads``): BLAS through threadpoolctl and torch through ``set_num_threads``.
The machine is shared, so besides wall time the table gives CPU time, which the load of other processes barely
changes; ratios are taken on CPU time.

Run: ``.venv/bin/python benchmarks/bench_gradcheck.py`` (about 12 minutes on 2 cores; ``--quick`` skips torch at
1e5 parameters, ``--sizes 20,30,20,1 64,100,50,10`` picks networks).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

import preflight
from preflight._util.text import format_table
from preflight.nn import Network

DEFAULT_SIZES = ["20,30,20,1", "64,100,50,10", "256,256,128,10"]
BATCH = 64
L2 = 0.01
#: The torch run at about 1e5 parameters takes minutes; --quick skips torch above this many parameters.
QUICK_TORCH_LIMIT = 50_000


def timed(run: Callable[[], Any], repeat: int = 1) -> tuple[Any, float, float]:
    """``run()``, its wall time and its CPU time (seconds; the best of ``repeat`` runs)."""
    best: tuple[Any, float, float] | None = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = run()
        result = (out, time.perf_counter() - wall, time.process_time() - cpu)
        best = result if best is None or result[2] < best[2] else best
    assert best is not None
    return best


def problem(sizes: list[int], seed: int = 0) -> tuple[Network, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    output = "sigmoid" if sizes[-1] == 1 else "softmax"
    net = Network(sizes, hidden="tanh", output=output, l2=L2)
    rng = np.random.default_rng(seed)
    params = net.init(rng, scheme="lecun")
    params = {n: v + 0.1 * rng.standard_normal(v.shape) if n[0] == "b" else v for n, v in params.items()}
    X = rng.standard_normal((BATCH, sizes[0]))
    y = rng.integers(0, 2, BATCH) if output == "sigmoid" else rng.integers(0, sizes[-1], BATCH)
    return net, params, X, y


def one_loss_seconds(net: Network, params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
    """CPU seconds of one ``net.cost`` call: the best of 7 runs of 50 calls (best, as the checks are timed)."""
    _, _, cpu = timed(lambda: [net.cost(params, X, y) for _ in range(50)], 7)
    return cpu / 50


def textbook(net: Network, params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray, eps: float = 1e-7) -> float:
    """The course's gradient_check_n: theta copied per coordinate, parameters rebuilt from it, central differences."""
    names = list(params)
    shapes = {n: params[n].shape for n in names}
    theta = np.concatenate([params[n].reshape(-1) for n in names])
    grad = np.concatenate([net.gradients(params, X, y)[n].reshape(-1) for n in names])

    def unravel(vector: np.ndarray) -> dict[str, np.ndarray]:
        out, start = {}, 0
        for n in names:
            size = int(np.prod(shapes[n]))
            out[n] = vector[start : start + size].reshape(shapes[n])
            start += size
        return out

    approx = np.zeros_like(theta)
    for i in range(theta.size):
        plus = np.copy(theta)
        plus[i] += eps
        minus = np.copy(theta)
        minus[i] -= eps
        approx[i] = (net.cost(unravel(plus), X, y) - net.cost(unravel(minus), X, y)) / (2 * eps)
    return float(np.linalg.norm(grad - approx) / (np.linalg.norm(grad) + np.linalg.norm(approx)))


def scipy_check(net: Network, params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> float:
    """``scipy.optimize.check_grad`` on the flat parameters: the norm of (analytic - one-sided numeric), absolute."""
    from scipy.optimize import check_grad

    names = list(params)
    shapes = [params[n].shape for n in names]
    bounds = np.cumsum([0] + [int(np.prod(shape)) for shape in shapes])

    def unravel(theta: np.ndarray) -> dict[str, np.ndarray]:
        pieces = zip(names, bounds[:-1], bounds[1:], shapes, strict=True)
        return {n: theta[a:b].reshape(shape) for n, a, b, shape in pieces}

    def gradient(theta: np.ndarray) -> np.ndarray:
        grads = net.gradients(unravel(theta), X, y)
        return np.concatenate([grads[n].reshape(-1) for n in names])

    theta = np.concatenate([params[n].reshape(-1) for n in names])
    return float(check_grad(lambda t: net.cost(unravel(t), X, y), gradient, theta))


def torch_cost(net: Network, params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
    """The flat float64 theta torch.autograd.gradcheck perturbs and the network's cost as a function of it."""
    import torch

    names = list(params)
    shapes = [params[n].shape for n in names]
    theta = torch.tensor(np.concatenate([params[n].reshape(-1) for n in names]))
    x, labels, m = torch.tensor(X), torch.tensor(np.asarray(y)), X.shape[0]

    def cost(flat: torch.Tensor) -> torch.Tensor:
        tensors, start = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            tensors.append(flat[start : start + size].reshape(shape))
            start += size
        a = x
        for layer in range(net.depth):
            z = a @ tensors[2 * layer].T + tensors[2 * layer + 1]
            a = torch.tanh(z) if layer < net.depth - 1 else z
        if net.output == "sigmoid":
            data = torch.nn.functional.binary_cross_entropy_with_logits(a[:, 0], labels.double(), reduction="sum")
        else:
            data = torch.nn.functional.cross_entropy(a, labels, reduction="sum")
        squares = sum(torch.sum(tensors[2 * layer] ** 2) for layer in range(net.depth))
        return data / m + net.l2 / (2 * m) * squares

    return theta, cost


def torch_check(net: Network, params: dict[str, np.ndarray], X: np.ndarray, y: np.ndarray) -> bool:
    import torch

    theta, cost = torch_cost(net, params, X, y)
    ok: bool = torch.autograd.gradcheck(
        cost, (theta.requires_grad_(True),), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=False
    )
    return ok


def measure(text: str, *, quick: bool, repeat: int) -> list[str]:
    """One row of the table: every tool on the network with layer widths ``text``."""
    sizes = [int(s) for s in text.split(",")]
    net, params, X, y = problem(sizes)
    count = sum(v.size for v in params.values())
    loss_s = one_loss_seconds(net, params, X, y)
    # Every tool is timed best of ``repeat`` up to QUICK_TORCH_LIMIT parameters (seconds each there; one timing of
    # a sub-second run moved the black-box ratio by +-30 % between runs), once above (minutes each).
    times = repeat if count <= QUICK_TORCH_LIMIT else 1
    if quick and count > QUICK_TORCH_LIMIT:
        torch_ok, torch_wall, torch_cpu = None, float("nan"), float("nan")
    else:
        torch_ok, torch_wall, torch_cpu = timed(lambda: torch_check(net, params, X, y), times)
    book, book_wall, book_cpu = timed(lambda: textbook(net, params, X, y), times)
    sp, sp_wall, sp_cpu = timed(lambda: scipy_check(net, params, X, y), times)
    grads = net.gradients(params, X, y)
    box, box_wall, box_cpu = timed(
        lambda: preflight.gradcheck(lambda p: net.cost(p, X, y), params, grads, progress=False), times
    )
    ours, ours_wall, ours_cpu = timed(lambda: preflight.nn.gradcheck(net, params, X, y, progress=False), times)
    floor = 2 * count * loss_s
    return [
        f"{count:,} ({text})",
        f"{loss_s * 1e6:.0f} us",
        f"{torch_cpu:.2f} s ({torch_wall:.1f})" + ("" if torch_ok is None else " ok" if torch_ok else " FAIL"),
        f"{book_cpu:.2f} s ({book_wall:.1f}) d={book:.1e}",
        f"{sp_cpu:.2f} s ({sp_wall:.1f}) |d|={sp:.1e}",
        f"{box_cpu:.2f} s ({box_wall:.1f}) {'ok' if box.passed else 'FAIL'}",
        f"{box_cpu / floor:.2f}",
        f"{ours_cpu:.2f} s ({ours_wall:.1f}) {'ok' if ours.passed else 'FAIL'}",
        f"{torch_cpu / ours_cpu:.1f}x",
        f"{sp_cpu / ours_cpu:.1f}x",
        f"{box_cpu / ours_cpu:.1f}x",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="layer widths, e.g. 64,100,50,10")
    parser.add_argument("--quick", action="store_true", help=f"skip torch above {QUICK_TORCH_LIMIT:,} parameters")
    parser.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1)")
    parser.add_argument(
        "--repeat", type=int, default=3, help=f"best of N for every tool up to {QUICK_TORCH_LIMIT:,} parameters"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for text in args.sizes:
            rows.append(measure(text, quick=args.quick, repeat=args.repeat))
            print(format_table(HEADER, rows), flush=True)
            print()
    print(
        f"CPU seconds (wall seconds in parentheses), {args.threads} thread(s), float64, batch {BATCH}, every "
        "coordinate two-sided. 'black box / 2P loss' is the black-box check's CPU time over 2 x P x (one loss "
        "evaluation); the 'vs' columns are the structure-aware check's speed-up (CPU time). scipy's check_grad is "
        "one-sided (P + 1 evaluations, error O(eps)) and returns |analytic - numeric| as an absolute norm."
    )


HEADER = [
    "parameters (layers)",
    "one loss",
    "torch gradcheck",
    "textbook loop",
    "scipy check_grad",
    "preflight black box",
    "black box / 2P loss",
    "preflight.nn.gradcheck",
    "vs torch",
    "vs scipy",
    "vs black box",
]


if __name__ == "__main__":
    main()
