"""Second-order checks beside torch.autograd.gradgradcheck: planted bugs in custom autograd Functions' double
backwards, and planted bugs in the reference network's Hessian-vector product.

    .venv/bin/python benchmarks/bench_second_order.py

Table 1: each Function of tests/second_order_functions.py (correct ones and planted second-order bugs), with
gradgradcheck's verdict (float64 and float32, default tolerances) beside ``preflight.torch.check_function(fn,
*inputs, order=2)`` in float64 and float32, where we locate the failure (the first failing entry) and the first hint.
Table 2: ``preflight.gradcheck(..., hvp=net.hvp)`` on the reference network with and without the planted hvp bugs,
and Network.hvp's largest relative difference from ``torch.autograd.functional.hvp`` over every activation x head
(float64, L2). Without ``--quick``: false alarms of ``gradcheck(..., hvp=net.hvp)`` on correct networks and of
``check_function(order=2)`` on correct compositions of torch ops over seeds (``--sweep``: that sweep alone,
with the planted bugs caught at every seed), and the cost of a full 1,994 x 1,994
Hessian check (NumPy and ``check_module(order=2)``) and of a sampled one.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.oracle import torch_cost
from tests.second_order_functions import CASES, COMPOSITIONS, PLANTED, inputs, sweep

import preflight
from preflight._util.text import format_table
from preflight.nn import ACTIVATIONS, HEADS, HVP_BUGS, BuggyNetwork, Network
from preflight.torch import check_function, check_module


def located(report: Any) -> str:
    """The first failing entry, where the report puts it (``x[0, 2] -> grad x[0, 2]``), or the first-order one."""
    for section in (report.second_order or {}, report.parameters):
        for name, result in section.items():
            failing = result.failing()
            if failing:
                return failing[0].where(name)
    return ""


def short(text: str, width: int = 72) -> str:
    text = text.removeprefix("second order: ")
    return text if len(text) <= width else text[: width - 3] + "..."


def functions_table() -> str:
    rows = []
    for name, (make, _, shapes, planted) in CASES.items():
        names = ["x", "w", "b"][: len(shapes)]
        args64 = tuple(inputs(shapes, torch.float64))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clock = time.perf_counter()
            theirs = torch.autograd.gradgradcheck(make(), args64, raise_exception=False)
            t_theirs = time.perf_counter() - clock
        clock = time.perf_counter()
        ours64 = check_function(make(), *args64, order=2, names=names)
        t_ours = time.perf_counter() - clock
        args32 = tuple(inputs(shapes, torch.float32))
        ours32 = check_function(make(), *args32, order=2, names=names)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs32 = torch.autograd.gradgradcheck(make(), args32, raise_exception=False)
        rows.append([
            name, planted, "pass" if theirs else "FAIL", "pass" if theirs32 else "FAIL", ours64.verdict,
            ours32.verdict, located(ours64), short(ours64.hints[0]) if ours64.hints else "", f"{t_theirs:.3f}",
            f"{t_ours:.3f}",
        ])  # fmt: skip
    headers = ["function", "planted", "gradgradcheck f64", "gradgradcheck f32", "ours f64", "ours f32",
               "first failing entry (f64)", "first hint (f64)", "s gradgrad f64", "s ours f64"]  # fmt: skip
    return format_table(headers, rows, title="check_function(order=2) beside torch.autograd.gradgradcheck")


def network_problem(net: Network, dtype: Any, seed: int = 0) -> tuple[Any, Any, Any]:
    rng = np.random.default_rng(seed)
    params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(dtype) for k, v in net.init(rng, "lecun").items()}
    return params, rng.standard_normal((8, net.sizes[0])), rng.integers(0, net.sizes[-1], 8)


def network_table() -> str:
    rows = []
    for bug in [None, *HVP_BUGS]:
        for dtype in (np.float64, np.float32):
            net = Network([4, 5, 4, 3], "tanh", "softmax", l2=0.5) if bug is None else BuggyNetwork(
                [4, 5, 4, 3], "tanh", "softmax", l2=0.5, bug=bug
            )  # fmt: skip
            params, X, y = network_problem(net, dtype)
            clock = time.perf_counter()
            report = preflight.gradcheck(
                lambda p, net=net, X=X, y=y: net.cost(p, X, y), params,
                lambda p, net=net, X=X, y=y: net.gradients(p, X, y),
                hvp=lambda p, v, net=net, X=X, y=y: net.hvp(p, X, y, v),
            )  # fmt: skip
            rows.append([bug or "none", np.dtype(dtype).name, report.verdict, short(report.hints[0], 90)
                         if report.hints else "", f"{time.perf_counter() - clock:.2f}"])  # fmt: skip
    headers = ["planted in Network.hvp", "dtype", "verdict", "first hint", "seconds"]
    return format_table(headers, rows, title="gradcheck(..., hvp=net.hvp), Network([4, 5, 4, 3], tanh, softmax)")


def hvp_agreement() -> float:
    """The largest ||ours - torch|| / ||torch|| over every activation x head (float64, L2 0.7, 2 directions)."""
    worst = 0.0
    for hidden, output in itertools.product(ACTIVATIONS, HEADS):
        net = Network([4, 6, 5, 3], hidden=hidden, output=output, l2=0.7)
        params, X, _ = network_problem(net, np.float64)
        rng = np.random.default_rng(1)
        y = rng.integers(0, 3, 8) if output == "softmax" else (rng.random((8, 3)) > 0.5).astype(float)
        Y = np.eye(3)[y] if output == "softmax" else y
        names = list(params)

        cost = torch_cost(net, X, Y, None)

        for _ in range(2):
            v = {k: rng.standard_normal(p.shape) for k, p in params.items()}
            ours = net.hvp(params, X, y, v)
            _, theirs = torch.autograd.functional.hvp(
                cost, tuple(torch.from_numpy(params[n]) for n in names), tuple(torch.from_numpy(v[n]) for n in names)
            )
            a = np.concatenate([ours[n].ravel() for n in names])
            b = np.concatenate([h.numpy().ravel() for h in theirs])
            worst = max(worst, float(np.linalg.norm(a - b) / np.linalg.norm(b)))
    return worst


def check_network(net: Network, params: Any, X: Any, y: Any) -> Any:
    return preflight.gradcheck(lambda p: net.cost(p, X, y), params, lambda p: net.gradients(p, X, y),
                               hvp=lambda p, v: net.hvp(p, X, y, v))  # fmt: skip


def false_alarms(seeds: int) -> str:
    """Correct networks [6, 10, 3] (L2 0.1, He init plus noise), per activation, batch and dtype: how many fail."""
    rows = []
    for m, hidden, dtype in itertools.product((64, 256), ("relu", "leaky_relu", "tanh"), (np.float32, np.float64)):
        net, failed = Network([6, 10, 3], hidden=hidden, output="softmax", l2=0.1), 0
        clock = time.perf_counter()
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            init = net.init(rng, "he", dtype=dtype)
            params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(dtype) for k, v in init.items()}
            X, y = rng.standard_normal((m, 6)), rng.integers(0, 3, m)
            failed += not check_network(net, params, X, y).passed
        rows.append([m, hidden, np.dtype(dtype).name, f"{failed} of {seeds}", f"{time.perf_counter() - clock:.1f}"])
    return format_table(["batch", "hidden", "dtype", "false alarms", "seconds"], rows,
                        title="gradcheck(..., hvp=net.hvp) on correct networks [6, 10, 3], softmax, L2")  # fmt: skip


def function_sweep(seeds: int) -> str:
    """check_function(order=2) over seeds (tests/second_order_functions.py's sweep): false alarms on correct
    compositions of torch ops (first order + second order), planted bugs caught and located."""
    found = sweep(seeds)
    rows = [[name, "correct", found[name]["float64"], found[name]["float32"]] for name in COMPOSITIONS]
    rows += [[name, "planted", f"{found[name]['float64']} of {seeds}", f"{found[name]['float32']} of {seeds}"]
             for name in PLANTED]  # fmt: skip
    return format_table(
        ["function", "kind", "float64", "float32"], rows,
        title=f"check_function(order=2) over {seeds} seeds: false alarms (first order + second order) on correct "
        "functions, planted bugs caught and located",
    )  # fmt: skip


def cost() -> str:
    rows = []
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 32)
    for sizes in ([20, 64, 10], [30, 64, 10]):
        net = Network(sizes, "tanh", "softmax", l2=0.1)
        params, X = net.init(0, "lecun"), rng.standard_normal((32, sizes[0]))
        clock = time.perf_counter()
        report = check_network(net, params, X, y)
        note = next(n for n in report.notes if n.startswith("second order: H v"))
        rows.append(["preflight.gradcheck(hvp=net.hvp)", sizes, report.verdict, note.split("own, and ", 1)[1],
                     f"{time.perf_counter() - clock:.1f}"])  # fmt: skip
    model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.Tanh(), torch.nn.Linear(64, 10)).double()
    x, target = torch.randn(32, 20, dtype=torch.float64), torch.randint(0, 10, (32,))
    clock = time.perf_counter()
    report = check_module(model, torch.nn.functional.cross_entropy, (x, target), order=2)
    note = next(n for n in report.notes if n.startswith("second order: H v"))
    rows.append(["check_module(order=2)", [20, 64, 10], report.verdict, note.split("own, and ", 1)[1],
                 f"{time.perf_counter() - clock:.1f}"])  # fmt: skip
    return format_table(["check", "sizes", "verdict", "what", "seconds"], rows, title="Cost, float64, batch 32, tanh")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="tables 1 and 2 only (no false-alarm sweep, no cost)")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per row of the false-alarm sweeps (default 20)")
    parser.add_argument("--sweep", action="store_true", help="check_function(order=2)'s sweep over seeds only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        print(f"torch {torch.__version__}, preflight {preflight.__version__}\n")
        if args.sweep:
            print(function_sweep(args.seeds))
            return
        print(functions_table())
        print()
        print(network_table())
        print(f"\nNetwork.hvp vs torch.autograd.functional.hvp, every activation x head, float64, L2: largest "
              f"relative difference {hvp_agreement():.1e}")  # fmt: skip
        if not args.quick:
            print()
            print(false_alarms(args.seeds))
            print()
            print(function_sweep(args.seeds))
            print()
            print(cost())


if __name__ == "__main__":
    main()
