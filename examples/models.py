"""Example models for the README, built from first principles (no downloads).

Each function is a gradcheck factory: ``gradcheck analyze examples/models.py:deep_sigmoid_mlp -s 256,64``.
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(depth: int, width: int, activation: type[nn.Module], init) -> nn.Sequential:  # noqa: ANN001
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        linear = nn.Linear(width, width)
        init(linear.weight)
        nn.init.zeros_(linear.bias)
        layers += [linear, activation()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def deep_sigmoid_mlp(depth: int = 12, width: int = 64) -> nn.Sequential:
    """The textbook vanishing-gradient network: sigmoid' <= 1/4 shrinks the backward signal per layer."""
    return _mlp(depth, width, nn.Sigmoid, nn.init.xavier_normal_)


def bad_relu_mlp(depth: int = 30, width: int = 256) -> nn.Sequential:
    """He et al.'s failing case: a 30-layer ReLU MLP with Xavier init. Each ReLU halves the variance
    that Xavier preserves, so the signal fades ~sqrt(2)x per layer (3e-5 over 30 layers)."""
    return _mlp(depth, width, nn.ReLU, nn.init.xavier_normal_)


def he_relu_mlp(depth: int = 30, width: int = 256) -> nn.Sequential:
    """The same network with He init: the signal keeps its scale across depth."""
    model = bad_relu_mlp(depth, width)
    for module in model:
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model


class BasicBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(out)))


class SmallResNet(nn.Module):
    """A ResNet-style CNN: conv stem, residual blocks with BatchNorm, global pooling, linear head."""

    def __init__(self, channels: int = 16, blocks: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.blocks = nn.Sequential(*[BasicBlock(channels) for _ in range(blocks)])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = self.blocks(x)
        return self.head(torch.flatten(self.pool(x), 1))


def small_resnet() -> SmallResNet:
    torch.manual_seed(0)
    return SmallResNet()
