"""The through-time probe (measure/through_time.py) runs on the batch's first sequences only, and what it
gives agrees, in the decades its verdicts read, with the profile over the whole batch computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradcheck_cli.measure.through_time import PROBE_SEQUENCES, time_profile


def _recorded(module: nn.Module) -> list[tuple[int, ...]]:
    """The shapes of the inputs ``module.forward`` is called with (the probe calls it directly)."""
    shapes: list[tuple[int, ...]] = []
    forward = module.forward
    module.forward = lambda x, *rest: (shapes.append(tuple(x.shape)), forward(x, *rest))[1]  # type: ignore[method-assign]
    return shapes


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_the_probe_runs_on_the_first_sequences_with_their_initial_state(cell: str, batch_first: bool) -> None:
    torch.manual_seed(0)
    rnn = getattr(nn, cell)(8, 16, num_layers=2, batch_first=batch_first)
    x = torch.randn(64, 12, 8) if batch_first else torch.randn(12, 64, 8)
    h0 = torch.randn(2, 64, 16)
    state = (h0, torch.randn(2, 64, 16)) if cell == "LSTM" else h0
    shapes = _recorded(rnn)
    profile = time_profile(rnn, (x, state), seed=0)
    assert shapes == [(PROBE_SEQUENCES, 12, 8) if batch_first else (12, PROBE_SEQUENCES, 8)]
    assert profile is not None and profile.shape == (12,) and bool(torch.isfinite(profile).all())


def _full_profile(rnn: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    """The profile over every sequence, one at a time: the RMS over sequences and features of
    d(r_b . h_T(b)) / dx_t(b), with r drawn for the whole batch from the same seed as the probe's."""
    r = torch.randn((x.shape[0], rnn.hidden_size), generator=torch.Generator().manual_seed(seed))
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for b in range(x.shape[0]):
        probe = x[b : b + 1].detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((rnn(probe)[0][0, -1] * r[b]).sum(), probe)
        squares += grad[0].double().pow(2).sum(dim=1)
    return (squares / (x.shape[0] * x.shape[2])).sqrt()


@pytest.mark.parametrize("forget_bias", [None, 1.0])
def test_the_first_sequences_give_the_whole_batch_profile_in_decades(forget_bias: float | None) -> None:
    torch.manual_seed(0)
    rnn = nn.LSTM(8, 32, batch_first=True)
    if forget_bias is not None:  # gate order i, f, g, o; bias_ih + bias_hh together
        with torch.no_grad():
            for name, p in rnn.named_parameters():
                if name.startswith("bias"):
                    p.zero_()
                    p[32:64] = forget_bias / 2
    x = torch.randn(64, 40, 8, generator=torch.Generator().manual_seed(3))
    probe = time_profile(rnn, (x,), seed=0).double()
    full = _full_profile(rnn, x, seed=0)
    ratio, full_ratio = (probe[0] / probe[-1]).item(), (full[0] / full[-1]).item()
    assert abs(math.log10(ratio / full_ratio)) < 0.15, (ratio, full_ratio)  # the first/last the verdict reads
    assert torch.allclose(probe.log10(), full.log10(), atol=0.25)  # every step within a factor 1.8
    assert not torch.allclose(probe, full, rtol=1e-3)  # (a subset, not the whole batch again)
