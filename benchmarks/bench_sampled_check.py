"""A sampled check of a ResNet-18 (11.2M parameters, our own code, no torchvision): its time and what it proved.

``check_module(model, loss, batch, sample=...)`` draws a stratified sample (every tensor, at least 16 coordinates
each, the rest in proportion to size), checks it against autograd, and states per tensor the chance that the judged
coordinates would have caught an error affecting 1 % of its elements (exact hypergeometric form). The model is in
eval mode (batch norm with settled running statistics), float32, a batch of 2 images of 3x16x16, one thread.

Run: ``.venv/bin/python benchmarks/bench_sampled_check.py`` (about a minute) or ``--sample 0.001 --size 32``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from preflight._util.text import format_table
from preflight.torch import check_module
from torch_models import ResNet18, images, settle_batch_norms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=float, default=0.0005, help="the share of coordinates sampled")
    parser.add_argument("--size", type=int, default=16, help="image height and width")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--tensors", action="store_true", help="print the whole report (one row per tensor)")
    parser.add_argument("--no-reference", action="store_true", help="float32 alone: no float64 copy checked too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    model = settle_batch_norms(ResNet18().to(dtype))
    x, y = images((args.batch, 3, args.size, args.size))
    count = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        model(x.to(dtype))  # untimed: the first call allocates
        forward = time.perf_counter()
        for _ in range(5):
            F.cross_entropy(model(x.to(dtype)), y)
        forward = (time.perf_counter() - forward) / 5
    start = time.perf_counter()
    report = check_module(
        model, F.cross_entropy, (x.to(dtype), y), sample=args.sample, progress=False, reference=not args.no_reference
    )
    seconds = time.perf_counter() - start
    if args.tensors:
        print(report, "\n")
    chances = [r.detection for r in report.parameters.values()]
    large = [r.detection for r in report.parameters.values() if r.size >= 100_000]
    rows = [
        [
            f"ResNet-18, {args.dtype}{' + float64 copy' if report.reference else ''}, batch {args.batch} of "
            f"3x{args.size}x{args.size}",
            count,
            len(report.parameters),
            report.checked,
            report.evaluations,
            seconds,
            round(seconds / forward),
            f"{min(chances):.3f} / {statistics.median(chances):.3f} / {min(large):.3f}",
            report.verdict,
        ]
    ]
    headers = ["model", "parameters", "tensors", "coordinates judged", "evaluations", "seconds", "in forward passes",
               "caught 1 %: min / median / min over tensors >= 1e5", "verdict"]  # fmt: skip
    title = f"Sampled check (sample={args.sample}), torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    print(format_table(headers, rows, title=title))
    print(f"\none forward pass (loss included): {forward * 1e3:.1f} ms; {report.notes[0]}")


if __name__ == "__main__":
    main()
