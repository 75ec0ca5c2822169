"""A grouped/depthwise conv's fan_out counts only its group's outputs, in every front end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from gradcheck_cli import analyze


def _model() -> nn.Module:
    torch.manual_seed(0)
    # depthwise 3x3 (groups = 8): each input channel reaches 1 output channel x 9 taps; then grouped 1x1 (groups 2)
    return nn.Sequential(nn.Conv2d(8, 8, 3, groups=8, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 1, groups=2), nn.ReLU())


@pytest.mark.parametrize("fmt", ["module", "torchscript", "export"])
def test_grouped_conv_fans(fmt: str, tmp_path: Path) -> None:
    model, x = _model(), torch.randn(2, 8, 6, 6)
    target: object = model
    if fmt == "torchscript":
        torch.jit.save(torch.jit.trace(model, x), tmp_path / "m.ts")
        target = str(tmp_path / "m.ts")
    elif fmt == "export":
        torch.export.save(torch.export.export(model, (x,)), tmp_path / "m.pt2")
        target = str(tmp_path / "m.pt2")
    fans = [(l.init.fan_in, l.init.fan_out) for l in analyze(target, x).layers if l.init is not None]
    assert fans == [(9, 9), (4, 8)]  # torch.nn.init would say fan_out 72 and 16
