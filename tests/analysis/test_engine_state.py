"""What analyze leaves behind in the process: the garbage collector's state, also after a failure."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.errors import AnalysisError


class _Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("no")


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_paused_only_during_the_passes(enabled: bool) -> None:
    seen: list[bool] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(gc.isenabled())
            return self.fc(x)

    (gc.enable if enabled else gc.disable)()
    try:
        analyze(Probe(), torch.randn(8, 4))
        assert seen == [False] and gc.isenabled() is enabled
        with pytest.raises(AnalysisError):
            analyze(_Raises(), torch.randn(8, 4))
        assert gc.isenabled() is enabled
    finally:
        gc.enable()
