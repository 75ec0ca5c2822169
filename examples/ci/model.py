"""The model this example project gates: a small residual MLP built from first principles.

``build`` is a factory (``gradcheck analyze model.py:build``): gradcheck calls it and analyses the
module it returns, with random inputs of the shape configured in ``pyproject.toml``.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """Pre-norm residual block: x + W2 relu(W1 norm(x)); the shortcut keeps the backward signal."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 2 * width)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(2 * width, width)
        nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")
        nn.init.zeros_(self.fc1.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class Net(nn.Module):
    def __init__(self, features: int = 32, width: int = 64, depth: int = 6, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Linear(features, width)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(depth)))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build() -> nn.Module:
    torch.manual_seed(0)
    return Net()
