"""Shared fixtures: small models built from first principles, and a CLI runner."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

os.environ.setdefault("COLUMNS", "200")  # rich: wide, stable tables in captured output
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))


def chain(depth: int, weight: float, activation: type[nn.Module] | None = None, width: int = 1) -> nn.Sequential:
    """``depth`` Linear(width, width) layers with every weight equal to ``weight``/width and no bias."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        linear = nn.Linear(width, width, bias=False)
        nn.init.constant_(linear.weight, weight / width)
        layers.append(linear)
        if activation is not None:
            layers.append(activation())
    return nn.Sequential(*layers)


def mlp(depth: int, width: int, activation: type[nn.Module], init: str, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for _ in range(depth):
        linear = nn.Linear(width, width)
        if init == "he":
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        elif init == "xavier":
            nn.init.xavier_normal_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers += [linear, activation()]
    return nn.Sequential(*layers)


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def invoke(runner):
    """Run the CLI in-process; returns the click Result (exit_code, stdout, stderr)."""
    from gradcheck_cli.cli.app import app

    def run(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run
