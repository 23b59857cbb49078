"""Models of the torch benchmarks, written here (no torchvision): LeNet-5, a small Transformer block, ResNet-18.

All are float64 on request (``.double()``) and deterministic in eval mode; the batch functions seed their own data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LeNet5(nn.Module):
    """LeCun et al. 1998 on 1x32x32 inputs: 61,706 parameters (tanh, average pooling)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(torch.tanh(self.conv1(x)), 2)
        x = F.avg_pool2d(torch.tanh(self.conv2(x)), 2)
        x = torch.tanh(self.fc1(x.flatten(1)))
        return self.fc3(torch.tanh(self.fc2(x)))


class Attention(nn.Module):
    """Multi-head self-attention with its four projections as Linear layers (as nanoGPT writes it)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads
        q = self.query(x).view(b, t, h, d // h).transpose(1, 2)
        k = self.key(x).view(b, t, h, d // h).transpose(1, 2)
        v = self.value(x).view(b, t, h, d // h).transpose(1, 2)
        weights = torch.softmax(q @ k.transpose(-2, -1) / (d // h) ** 0.5, dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(b, t, d))


class TransformerBlock(nn.Module):
    """Token embedding, one pre-norm block (attention and a GELU MLP, both residual), mean pooling, a classifier.

    vocabulary 1000, width 64, 4 heads, MLP 64 -> 256 -> 64, 10 classes: 114,634 parameters (56 % of them in the
    embedding, as in small language models).
    """

    def __init__(self, vocabulary: int = 1000, width: int = 64, heads: int = 4, hidden: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = Attention(width, heads)
        self.up, self.down = nn.Linear(width, hidden), nn.Linear(hidden, width)
        self.head = nn.Linear(width, 10)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        x = x + self.attention(self.norm1(x))
        x = x + self.down(F.gelu(self.up(self.norm2(x))))
        return self.head(x.mean(dim=1))


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convolutions with batch norm, and the shortcut (a 1x1 convolution when the shape changes)."""

    def __init__(self, n_in: int, n_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(n_out)
        self.conv2 = nn.Conv2d(n_out, n_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(n_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or n_in != n_out:
            self.shortcut = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride=stride, bias=False), nn.BatchNorm2d(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs (He et al. 2016; the CIFAR stem: a 3x3 convolution, no max pooling).

    11,173,962 parameters with 10 classes.
    """

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        blocks: list[nn.Module] = []
        n_in = 64
        for n_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(n_in, n_out, stride), BasicBlock(n_out, n_out, 1)]
            n_in = n_out
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def settle_batch_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Running statistics and affine parameters away from their initial 0/1, as after training (eval mode)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=generator))
                m.running_var.copy_(1 + 0.5 * torch.rand(m.num_features, generator=generator))
                m.weight.copy_(1 + 0.1 * torch.randn(m.num_features, generator=generator))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=generator))
    return model.eval()


def images(shape: tuple[int, ...], classes: int = 10, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A float64 batch of random images and labels."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, dtype=torch.float64, generator=generator)
    return x, torch.randint(0, classes, (shape[0],), generator=generator)


def token_batch(
    m: int = 4, length: int = 16, vocabulary: int = 1000, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token sequences and labels."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocabulary, (m, length), generator=generator)
    return tokens, torch.randint(0, 10, (m,), generator=generator)
