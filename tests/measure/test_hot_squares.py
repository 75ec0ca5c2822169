"""Norms taken in the last backward pass (HotSquares) equal the ones read after it, bit for bit:
large and small parameters, a tied weight, several batches, and a parameter the last batch skips."""

from __future__ import annotations

import torch
from torch import nn

from gradcheck_cli.measure.params import HotSquares, parameter_measures


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(300, 300)
        self.b = nn.Linear(300, 300)
        self.b.weight = self.a.weight  # tied: one parameter, two uses
        self.c = nn.Linear(300, 8)
        self.skipped = nn.Linear(300, 300)  # used by the first batch only

    def forward(self, x: torch.Tensor, first: bool) -> torch.Tensor:
        h = self.b(torch.relu(self.a(x)))
        if first:
            h = h + self.skipped(x)
        return self.c(h)


def _measures(hot: bool) -> list:
    torch.manual_seed(0)
    model = Tied()
    params = dict(model.named_parameters())
    taps = HotSquares(params) if hot else None
    for i in range(3):
        if taps is not None:
            taps.armed = i == 2
        model(torch.randn(16, 300), first=i == 0).square().sum().backward()
    if taps is not None:
        taps.remove()
        # only a.weight (tied: one accumulation, once) is large and in the last batch; skipped.weight is
        # read after the pass, the small ones always are
        assert list(taps.squares) == [id(model.a.weight)]
    return parameter_measures(model, params, 3, hot=taps)


def test_hot_norms_equal_cold_ones_bitwise() -> None:
    cold, hot = _measures(False), _measures(True)
    assert [(m.name, m.weight_norm, m.grad_norm) for m in hot] == [(m.name, m.weight_norm, m.grad_norm) for m in cold]
    assert any(m.name == "skipped.weight" and m.grad_norm for m in hot)  # its gradient from batch 1, read after
