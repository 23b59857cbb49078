"""A 3x3 convolution with padding 1, written with unfold (im2col) and a hand-written col2im backward.

Bugs: the col2im loop's upper bound off by one (``min(H - 1, ...)``), so the last output row and column send no
gradient back: only edge elements of dx are wrong; reflect padding in the forward with the zero-padding backward
(the gradient through the reflected border is lost: wrong only next to the edge); in and out channels swapped in
the weight gradient.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .common import function_case
from .registry import generator, randn

K, P = 3, 1


def conv_forward(x: Any, w: Any, reflect: bool = False) -> Any:
    n, _, h, width = x.shape
    if reflect:
        cols = F.unfold(F.pad(x, (P, P, P, P), mode="reflect"), K)
    else:
        cols = F.unfold(x, K, padding=P)
    return (w.reshape(w.shape[0], -1) @ cols).reshape(n, w.shape[0], h, width)


def conv_reflect_forward(x: Any, w: Any) -> Any:
    return conv_forward(x, w, reflect=True)


def col2im(cols: Any, shape: tuple[int, ...], last_row_bug: bool) -> Any:
    """Sum the patches' gradients back onto the input: output (i, j) with kernel offset (a, b) read x[i + a - P,
    j + b - P]; only the output positions whose input position lies inside the image contribute."""
    n, c, h, w = shape
    patches = cols.reshape(n, c, K, K, h, w)
    dx = torch.zeros(shape, dtype=cols.dtype)
    for a in range(K):
        for b in range(K):
            i0, i1 = max(0, P - a), min(h - 1 if last_row_bug else h, h + P - a)
            j0, j1 = max(0, P - b), min(w - 1 if last_row_bug else w, w + P - b)
            dx[:, :, i0 + a - P : i1 + a - P, j0 + b - P : j1 + b - P] += patches[:, :, a, b, i0:i1, j0:j1]
    return dx


def conv(bug: str = "") -> type[torch.autograd.Function]:
    class Conv(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, w: Any) -> Any:
            ctx.save_for_backward(x, w)
            return conv_forward(x, w, reflect=bug == "reflect-forward")

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            x, w = ctx.saved_tensors
            n, o = g.shape[:2]
            g_flat = g.reshape(n, o, -1)
            cols = F.unfold(x, K, padding=P)
            if bug == "reflect-forward":
                cols = F.unfold(F.pad(x, (P, P, P, P), mode="reflect"), K)
            dw = (g_flat @ cols.transpose(1, 2)).sum(0).reshape(w.shape)
            if bug == "swapped-channels":
                dw = dw.transpose(0, 1).contiguous()
            dx = col2im(w.reshape(o, -1).T @ g_flat, tuple(x.shape), last_row_bug=bug == "loop-bound")
            return dx, dw

    return Conv


def image(dtype: str, seed: int) -> Any:
    gen = generator(seed, 30)
    x = randn((2, 3, 6, 6), gen, dtype)
    w = randn((3, 3, K, K), gen, dtype, scale=1 / math.sqrt(3 * K * K))
    return (x, w), ("x", "weight")


CV = "conv (unfold, padding 1)"
function_case("conv", CV, conv(), conv_forward, image)
function_case(
    "conv/loop-bound", CV, conv("loop-bound"), conv_forward, image, tags=("edge",),
    bug="col2im's bound min(H - 1, ...) instead of min(H, ...): dx wrong in the last two rows and columns only",
)  # fmt: skip
function_case(
    "conv/reflect-forward", CV, conv("reflect-forward"), conv_reflect_forward, image, tags=("edge",),
    bug="reflect padding in the forward, the zero-padding col2im in the backward: dx wrong next to the edge only",
)  # fmt: skip
function_case(
    "conv/swapped-channels", CV, conv("swapped-channels"), conv_forward, image,
    bug="dW with in and out channels swapped (3 in, 3 out: shapes agree)",
)  # fmt: skip
