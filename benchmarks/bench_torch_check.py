"""preflight.torch.check_module against torch.autograd.gradcheck on the same MLP, side by side in one run.

Both check every coordinate of a float64 tanh MLP with a softmax cross-entropy over a batch of 64, two loss
evaluations per coordinate. Then the directional screen (``screen=3``): its number of loss evaluations, and so its
cost in units of one loss evaluation, does not grow with the parameter count.

Then the graph strategy on layers other than Linear (``--models``): a LeNet-5 CNN (61,706 parameters, batch 8 of
1x32x32) and a small Transformer block (114,634 parameters: embedding, attention, GELU MLP, layer norms; batch 4 of
16 tokens), every coordinate in float64, against torch.autograd.gradcheck timed on a share of the coordinates
(``--share``, drawn at random over all tensors) and extrapolated to all of them (labelled so): a full torch run
would take 10-20 minutes per model. One thread for both (``torch.set_num_threads(1)``).

Run: ``.venv/bin/python benchmarks/bench_torch_check.py`` (the MLP, about 2 minutes, torch's part ~85 s),
``--quick`` (a 12k-parameter MLP, ~10 s), ``--models`` (LeNet-5 and the Transformer block only, ~3 minutes).
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from torch import nn
from torch.func import functional_call

from preflight._util.text import format_table
from preflight.torch import check_module
from torch_models import LeNet5, TransformerBlock, images, token_batch

FULL = [256, 256, 128, 10]  # 99,978 parameters, as in ../shared/ANCHORS.md
QUICK = [64, 100, 50, 10]  # 12,060 parameters
SCREEN_WIDTHS = [16, 64, 256, 1024]


def mlp(sizes: list[int], seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).double()


def batch_for(sizes: list[int], m: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(m, sizes[0], dtype=torch.float64, generator=generator)
    return x, torch.randint(0, sizes[-1], (m,), generator=generator)


def timed(fn: object) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()  # type: ignore[operator]
    return time.perf_counter() - start, result


def side_by_side(sizes: list[int]) -> None:
    model, (x, y) = mlp(sizes), batch_for(sizes)
    names = [n for n, _ in model.named_parameters()]
    count = sum(p.numel() for p in model.parameters())
    ours_s, report = timed(lambda: check_module(model, nn.functional.cross_entropy, (x, y), progress=False))
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())

    def loss(*values: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(model, dict(zip(names, values, strict=True)), (x,)), y)

    theirs_s, ok = timed(lambda: torch.autograd.gradcheck(loss, params, fast_mode=False, raise_exception=False))
    one_s, _ = timed(lambda: [loss(*params) for _ in range(20)])
    rows = [
        ["preflight.torch.check_module", count, report.evaluations, ours_s, "passed" if report.passed else "FAILED"],  # type: ignore[attr-defined]
        ["torch.autograd.gradcheck (fast_mode=False)", count, 2 * count, theirs_s, "passed" if ok else "FAILED"],
    ]
    title = (
        f"Full check, float64 MLP {sizes}, batch 64, every coordinate (one loss evaluation: {one_s / 20 * 1e6:.0f} us)"
    )
    print(format_table(["checker", "parameters", "loss evaluations", "seconds", "verdict"], rows, title=title))
    print(f"\nspeed-up: {theirs_s / ours_s:.1f}x   ({report.notes[0]})\n", flush=True)  # type: ignore[attr-defined]


def screen_cost(widths: list[int]) -> None:
    rows = []
    for width in widths:
        sizes = [width, width, width, 10]
        model, (x, y) = mlp(sizes), batch_for(sizes)
        count = sum(p.numel() for p in model.parameters())
        start = time.perf_counter()
        report = check_module(model, nn.functional.cross_entropy, (x, y), screen=3)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(20):
                nn.functional.cross_entropy(model(x), y)
        one = (time.perf_counter() - start) / 20
        rows.append([count, report.evaluations, seconds, seconds / one, "passed" if report.passed else "FAILED"])
    headers = ["parameters", "loss evaluations", "seconds", "seconds / one loss evaluation", "verdict"]
    print(format_table(headers, rows, title="Directional screen (3 random directions), MLP [w, w, w, 10], batch 64"))


def torch_seconds_per_coordinate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, share: int) -> float:
    """torch.autograd.gradcheck's seconds per coordinate, on ``share`` coordinates drawn over the whole model.

    gradcheck perturbs a 1-d tensor holding the drawn coordinates; the loss writes them into the flat parameter
    vector (a copy of ~1e5 numbers, small next to the model's forward pass) and calls the model.
    """
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    index = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[:share]

    def loss(part: torch.Tensor) -> torch.Tensor:
        full = flat.index_put((index,), part)
        values = dict(
            zip(
                names,
                (v.view(s) for v, s in zip(full.split([s.numel() for s in shapes]), shapes, strict=True)),
                strict=True,
            )
        )
        return nn.functional.cross_entropy(functional_call(model, values, (x,)), y)

    part = flat[index].clone().requires_grad_(True)
    seconds, _ = timed(lambda: torch.autograd.gradcheck(loss, (part,), fast_mode=False, raise_exception=False))
    return seconds / share


def layer_models(share: int) -> None:
    """LeNet-5 and the Transformer block: our full check against torch's, extrapolated from ``share`` coordinates."""
    cases = [
        ("LeNet-5 CNN, batch 8 of 1x32x32", LeNet5().double().eval(), images((8, 1, 32, 32))),
        ("Transformer block, batch 4 of 16 tokens", TransformerBlock().double().eval(), token_batch()),
    ]
    rows = []
    for title, model, (x, y) in cases:
        count = sum(p.numel() for p in model.parameters())
        ours_s, report = timed(
            lambda m=model, b=(x, y): check_module(m, nn.functional.cross_entropy, b, progress=False)
        )
        per = torch_seconds_per_coordinate(model, x, y, min(share, count))
        verdict = "passed" if report.passed else "FAILED"  # type: ignore[attr-defined]
        rows.append(
            [
                title,
                count,
                ours_s,
                f"{per * count:.0f} (extrapolated from {min(share, count):,})",
                per * count / ours_s,
                verdict,
            ]
        )
        print(f"{title}: {report.notes[0]}", flush=True)  # type: ignore[attr-defined]
    headers = [
        "model (float64, every coordinate)",
        "parameters",
        "check_module s",
        "torch gradcheck s",
        "speed-up",
        "verdict",
    ]
    print(
        format_table(headers, rows, title="Full checks of layers other than Linear (graph strategy), one thread each")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12k parameters instead of 1e5 (about 10 s)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, for both checkers")
    parser.add_argument("--models", action="store_true", help="only the LeNet-5 and Transformer comparison")
    parser.add_argument("--share", type=int, default=3000, help="coordinates torch gradcheck is timed on")
    args = parser.parse_args()
    # One thread by default: on a shared 2-core machine OpenMP's spinning threads make small ops 100x slower.
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)\n", flush=True)
    if args.models:
        layer_models(args.share)
        return
    side_by_side(QUICK if args.quick else FULL)
    screen_cost(SCREEN_WIDTHS[:3] if args.quick else SCREEN_WIDTHS)


if __name__ == "__main__":
    main()
