"""Norms taken in the last backward pass (HotSquares) equal the ones read after it, bit for bit:
large and small parameters, a tied weight, several batches, and a parameter the last batch skips."""

from __future__ import annotations

import pytest
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


def _deviations(model: nn.Module, x: torch.Tensor, hot: bool,
                dims: dict[str, int] | None = None) -> dict[str, float | None]:
    params = dict(model.named_parameters())
    dims = dims or {name: 0 for name in params if name.endswith("weight")}
    taps = HotSquares(params, lambda: dims) if hot else None
    if taps is not None:
        taps.armed = True
    try:
        model(x).square().sum().backward()
    finally:
        if taps is not None:
            taps.remove()
    if taps is not None:
        assert set(taps.spreads) == {id(p) for p in params.values() if p.dim() == 2 and p.numel() >= 1 << 16}
    out = {m.name: m.unit_deviation for m in parameter_measures(model, params, 1, dims, hot=taps)}
    model.zero_grad(set_to_none=True)
    return out


def test_hot_unit_spreads_match_the_exact_centring() -> None:
    """Random weights take the shortcut (within 1e-5 of exact centring); near-identical units and a
    constant weight fall back to the exact pass, so they come out equal to it bit for bit (0 for constant)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(300, 400), nn.ReLU(), nn.Linear(400, 300), nn.ReLU(), nn.Linear(300, 300), nn.Linear(300, 4))
    with torch.no_grad():
        model[2].weight.copy_(model[2].weight[:1].expand(300, 400) + 1e-6 * torch.randn(300, 400))  # near-identical
        model[4].weight.fill_(0.01)  # identical units
    x = torch.randn(8, 300)
    cold, hot = _deviations(model, x, hot=False), _deviations(model, x, hot=True)
    assert hot["0.weight"] != cold["0.weight"]  # the shortcut ran (float32 terms, not the centring)
    assert hot["0.weight"] == pytest.approx(cold["0.weight"], rel=1e-5)
    assert hot["2.weight"] == cold["2.weight"] and hot["4.weight"] == cold["4.weight"] == 0.0
    assert hot["5.weight"] == cold["5.weight"]  # small: centred with the other small weights either way


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_hot_unit_spreads_in_other_precisions(dtype: torch.dtype) -> None:
    """The shortcut's terms keep the weight's precision (float32 at least for half weights: their
    column sums are taken in float32) and are combined in float64 on the host, so they agree with the
    exact centring in every dtype a model may train in."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(300, 400), nn.ReLU(), nn.Linear(400, 4)).to(dtype)
    x = torch.randn(8, 300, dtype=dtype)
    cold, hot = _deviations(model, x, hot=False), _deviations(model, x, hot=True)
    assert hot["0.weight"] != cold["0.weight"]  # the shortcut ran
    assert hot["0.weight"] == pytest.approx(cold["0.weight"], rel=1e-9 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_hot_unit_spreads_of_transposed_weights(dtype: torch.dtype) -> None:
    """A weight stored (in, out) -- Hugging Face's Conv1D -- has its units along dim 1: the shortcut's
    column sums are then its row sums (W 1, not 1^T W), and agree with the exact centring along dim 1."""
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(3)
    model = nn.Sequential(Conv1D(400, 300), nn.ReLU(), nn.Linear(400, 4)).to(dtype)
    with torch.no_grad():
        model[0].weight.mul_(torch.linspace(0.5, 2.0, 400, dtype=dtype))  # units of different scales
    x = torch.randn(8, 300, dtype=dtype)
    dims = {"0.weight": 1, "2.weight": 0}
    cold, hot = _deviations(model, x, hot=False, dims=dims), _deviations(model, x, hot=True, dims=dims)
    if dtype != torch.float64:  # float64's shortcut may land on the centring's bits
        assert hot["0.weight"] != cold["0.weight"]  # the shortcut ran
    # float64 to 1e-12: the shortcut's terms are float64 (a float32 sum of squares was off by ~2e-8 here)
    assert hot["0.weight"] == pytest.approx(cold["0.weight"], rel=1e-12 if dtype == torch.float64 else 1e-5)
    w = model[0].weight.detach().double()
    along_units = (w - w.mean(dim=1, keepdim=True)).norm().item()  # each unit is a column of (in, out)
    assert cold["0.weight"] == pytest.approx(along_units, rel=1e-5)
