"""--meta-init's materialisation, in one process (no sharding): the normal build's values, or a clear refusal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.analysis.distributed import materialize
from gradcheck_cli.errors import UsageError


def _build() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2))


def test_replaying_reset_parameters_from_the_factorys_rng_gives_the_normal_values() -> None:
    normal = _build()
    with torch.device("meta"):
        meta = _build()
    materialize(meta, torch.device("cpu"), torch.get_rng_state())
    for (name, a), (_, b) in zip(normal.state_dict().items(), meta.state_dict().items()):
        assert torch.equal(a, b), name


class _Buffered(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("freqs", torch.arange(4.0))  # computed in __init__: no reset method rebuilds it


def test_a_buffer_no_reset_method_rebuilds_is_refused_by_name() -> None:
    with torch.device("meta"):
        meta = _Buffered()
    with pytest.raises(UsageError, match="cannot rebuild the buffer freqs"):
        materialize(meta, torch.device("cpu"), torch.get_rng_state())


def test_meta_init_outside_fsdp_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--meta-init needs --distributed fsdp"):
        analyze(f"{__file__}:_build", torch.randn(4, 6), meta_init=True)
