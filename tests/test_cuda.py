"""CUDA and CPU statistics agree (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch
from conftest import mlp
from torch import nn

from gradcheck_cli import analyze

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _approx(expected, **tolerance):  # noqa: ANN001, ANN202
    """Within tolerance; a statistic that was not measured (None) must be None on both devices."""
    return None if expected is None else pytest.approx(expected, **tolerance)


@pytest.mark.parametrize("depth", [4, 16])
def test_cuda_statistics_match_cpu(depth):
    model = mlp(depth, 128, nn.ReLU, "he")
    x = torch.randn(256, 128)
    cpu = analyze(model, x, device="cpu")
    gpu = analyze(model, x, device="cuda")
    assert gpu.run.device.startswith("cuda")
    for a, b in zip(cpu.layers, gpu.layers):
        assert a.name == b.name
        assert b.activation.std == pytest.approx(a.activation.std, rel=1e-3)
        assert b.activation.signal_std == pytest.approx(a.activation.signal_std, rel=1e-3)
        assert b.activation.zero_fraction == _approx(a.activation.zero_fraction, abs=1e-3)
        assert b.grad.output_rms == pytest.approx(a.grad.output_rms, rel=1e-3)
    assert [f.kind for f in cpu.findings] == [f.kind for f in gpu.findings]


def test_cuda_torchscript_and_export():
    model = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    x = torch.randn(16, 8)
    cpu = analyze(model, x)
    for wrapped in (torch.jit.script(model), torch.export.export(model.cuda(), (x.cuda(),))):
        gpu = analyze(wrapped, x, device="cuda")
        for a, b in zip(cpu.layers, gpu.layers):
            assert b.grad.output_rms == pytest.approx(a.grad.output_rms, rel=1e-3)
    model.cpu()


def test_cuda_sampled_statistics_match_cpu():
    """--sample-stats picks the same units on either device (the index is drawn on the CPU, then moved)."""
    model = mlp(6, 256, nn.ReLU, "he")
    x = torch.randn(256, 256)
    cpu = analyze(model, x, device="cpu", sample_stats=32)
    gpu = analyze(model, x, device="cuda", sample_stats=32)
    for a, b in zip(cpu.layers, gpu.layers):
        assert b.activation.units == a.activation.units
        assert b.activation.dead_ratio == a.activation.dead_ratio
        assert b.activation.std == pytest.approx(a.activation.std, rel=1e-3)
        assert b.activation.zero_fraction == _approx(a.activation.zero_fraction, abs=1e-6)


def test_cuda_cnn_statistics_match_cpu():
    """Channel-first layers take different kernels on each device (CPU: uncentred shortcut with a
    host-side precision check; CUDA: the exact centred pass): the figures must still agree."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 8, 3),
                          nn.Sigmoid(), nn.Flatten(), nn.Linear(8 * 14 * 14, 4))
    x = torch.randn(32, 3, 16, 16)
    cpu = analyze(model, x, device="cpu")
    gpu = analyze(model, x, device="cuda")
    for a, b in zip(cpu.layers, gpu.layers):
        assert a.name == b.name
        for field in ("mean", "std", "signal_std", "zero_fraction", "dead_ratio", "saturation"):
            assert getattr(b.activation, field) == _approx(getattr(a.activation, field), rel=1e-3, abs=1e-5), field
        assert b.grad.output_rms == pytest.approx(a.grad.output_rms, rel=1e-3)
    assert [f.kind for f in cpu.findings] == [f.kind for f in gpu.findings]
