"""unit_deviations against a float64 reference: whole weights, column blocks, stacked small weights,
transposed storage, and exactly identical units (0, not rounding noise)."""

from __future__ import annotations

import math

import pytest
import torch

from gradcheck_cli.measure import params as params_module
from gradcheck_cli.measure.params import unit_deviations


def _reference(w: torch.Tensor, dim: int) -> float:
    m = w.detach().double().movedim(dim, 0).reshape(w.shape[dim], -1)
    return math.sqrt(((m - m.mean(dim=0)) ** 2).sum().item())


@pytest.mark.parametrize("block", [1 << 18, 7, 64])
def test_matches_float64_reference(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(params_module, "CENTRING_BLOCK", block)
    g = torch.Generator().manual_seed(0)
    shapes = {"big": ((96, 80), 0), "conv": ((16, 8, 3, 3), 0), "tiny.a": ((4, 4), 0), "tiny.b": ((4, 4), 0),
              "transposed": ((40, 120), 1), "offset": ((70, 70), 0)}
    params = {name: torch.nn.Parameter(torch.randn(*shape, generator=g) * 0.05 + (3.0 if name == "offset" else 0.0))
              for name, (shape, _) in shapes.items()}
    dims = {name: dim for name, (_, dim) in shapes.items()}
    before = {name: p.detach().clone() for name, p in params.items()}
    got = unit_deviations(params, dims)
    for name, p in params.items():
        # float32 centring after an exact shift by the first unit: ~1e-9 relative, far inside the report's 7 digits
        assert got[name] == pytest.approx(_reference(p, dims[name]), rel=1e-7), name
        assert torch.equal(p.detach(), before[name]), f"{name} was modified"


def test_identical_units_are_exactly_zero() -> None:
    row = torch.randn(1, 300, generator=torch.Generator().manual_seed(1))
    params = {"big": torch.nn.Parameter(row.repeat(64, 1)), "tiny": torch.nn.Parameter(row[:, :3].repeat(4, 1))}
    assert unit_deviations(params, {"big": 0, "tiny": 0}) == {"big": 0.0, "tiny": 0.0}


@pytest.mark.parametrize("block", [1 << 18, 64])
def test_nearly_identical_units_keep_their_spread(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Units 1e-7 apart (relative) around a large common row: centring around the mean unit in float32
    would lose them in rounding (the weights' own ulp is 1e-7 of 3.0); shifted by the first unit first
    they come out within 1e-4 of the float64 reference, so the 1e-6 symmetry threshold is decided right."""
    monkeypatch.setattr(params_module, "CENTRING_BLOCK", block)
    g = torch.Generator().manual_seed(2)
    row = torch.randn(1, 256, generator=g) + 3.0
    w = torch.nn.Parameter(row.repeat(128, 1) + 1e-6 * torch.randn(128, 256, generator=g))
    got = unit_deviations({"w": w}, {"w": 0})["w"]
    assert got > 0
    assert got == pytest.approx(_reference(w, 0), rel=1e-4)
