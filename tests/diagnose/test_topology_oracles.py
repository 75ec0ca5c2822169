"""Topology-aware verdicts against theory (THEORY.md section 6), on models built here.

A residual stream keeps its backward signal when the branches are small (x + eps F(x)); the same
per-layer scale without the shortcut compounds. Branch layers are judged block against block, never
against the last layer of the model.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradcheck_cli import analyze


class Block(nn.Module):
    """x + scale * fc2(relu(fc1(x))): ``scale`` plays LayerScale."""

    def __init__(self, width: int, scale: float, gain: float = 1.0) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)
        for fc in (self.fc1, self.fc2):
            nn.init.kaiming_normal_(fc.weight, nonlinearity="relu")
            fc.weight.data *= gain
            nn.init.zeros_(fc.bias)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.fc2(torch.relu(self.fc1(x)))


def residual(depth: int, scale: float, gain: float = 1.0, width: int = 32) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, width), *[Block(width, scale, gain) for _ in range(depth)], nn.Linear(width, 4))


def plain(depth: int, scale: float, width: int = 32) -> nn.Sequential:
    """The same per-layer scale with no shortcut: each layer multiplies the signal by ``scale``."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(16, width)]
    for _ in range(depth):
        layer = nn.Linear(width, width, bias=False)
        nn.init.orthogonal_(layer.weight, gain=scale)
        layers.append(layer)
    return nn.Sequential(*layers, nn.Linear(width, 4))


def _x() -> torch.Tensor:
    return torch.randn(256, 16, generator=torch.Generator().manual_seed(1))


def test_the_topology_puts_blocks_on_branches_and_the_stream_on_the_main_path() -> None:
    report = analyze(residual(4, 1.0), _x())
    place = {l.name: l.topology for l in report.layers}
    assert place["0"].path == "main" and place["5"].path == "main"  # input projection and head
    assert place["2.fc1"].path == "branch" and place["2.fc1"].role == "*.fc1"
    assert report.paths == [["0", "5"]]
    chain = analyze(plain(5, 1.0), _x())
    assert [len(p) for p in chain.paths] == [7] and all(l.topology.path == "main" for l in chain.layers)


def test_layerscale_branches_are_small_by_design_and_healthy() -> None:
    """Branches at 1e-6: each branch layer's gradient is ~1e-6 of the stream's, identically in every block."""
    report = analyze(residual(12, 1e-6), _x())
    fc2 = [l.grad.output_rms for l in report.layers if l.name.endswith("fc2")]
    head = next(l for l in report.layers if l.name == "13").grad.output_rms
    assert max(fc2) / head < 1e-5  # what the old single-chain rule called vanishing
    assert max(fc2) / min(fc2) < 1.01  # the stream is flat: block 0 sees what block 11 sees
    assert not [f for f in report.findings if f.severity in ("error", "warning")], report.findings


def test_a_plain_stack_of_the_same_depth_and_scale_vanishes() -> None:
    report = analyze(plain(12, 0.5), _x())  # orthogonal x 0.5: exactly 0.5 per layer going back
    grads = [l.grad.output_rms for l in report.layers if l.kind == "linear"]
    assert grads[1] / grads[12] == pytest.approx(0.5**11, rel=1e-3)
    (f,) = [f for f in report.findings if f.kind == "vanishing_gradient"]
    assert f.layer == "0" and f.value < 1e-3 and "over 14 weight layers" in f.message


def test_an_exploding_residual_stream_is_found_across_blocks() -> None:
    """Branches at 2x He scale, no normalisation: the stream's variance grows ~(1 + 4) per block, so the
    backward signal block 0 receives is ~sqrt(5)^11 = 7e3 times block 11's (measured, not assumed)."""
    report = analyze(residual(12, 1.0, gain=2.0), _x())
    fc1 = [l.grad.output_rms for l in report.layers if l.name.endswith("fc1")]
    assert fc1[0] / fc1[-1] > 1e3
    (f,) = [f for f in report.findings if f.kind == "exploding_gradient"]
    assert "across 12 blocks of" in f.message and "per block" in f.message
