"""Fast on-device statistics against a slow, obvious reference over the full tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.analysis.loss import compute_loss
from gradcheck_cli.measure.merging import merge_rows, single_rows as _single_rows


def _model() -> nn.Sequential:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.Sigmoid(), nn.Linear(32, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def _reference(model: nn.Module, batches: list[torch.Tensor]):
    """Per layer: every output and every output gradient, kept whole (what gradcheck must not do)."""
    outputs: dict[int, list[torch.Tensor]] = {}
    grads: dict[int, list[torch.Tensor]] = {}
    handles = []
    for i, layer in enumerate(model):
        def hook(module, args, out, i=i):
            outputs.setdefault(i, []).append(out.detach().clone())
            out.register_hook(lambda g, i=i: grads.setdefault(i, []).append(g.detach().clone()))
        handles.append(layer.register_forward_hook(hook))
    try:
        for b, x in enumerate(batches):
            compute_loss("projection", model(x), None, seed=b).backward()
    finally:
        for h in handles:
            h.remove()
    model.zero_grad(set_to_none=True)
    return outputs, grads


@pytest.mark.parametrize("batch_size,batches", [(None, 1), (50, 3)])
def test_layer_statistics_match_full_tensor_reference(batch_size, batches):
    torch.manual_seed(0)
    data = torch.randn(150, 12)
    model = _model()
    report = analyze(model, data, batch_size=batch_size, batches=batches)
    chunks = [data] if batch_size is None else list(data.split(batch_size))[:batches]
    outputs, grads = _reference(model, chunks)

    assert [l.name for l in report.layers] == [str(i) for i in range(7)]
    for i, layer in enumerate(report.layers):
        out = torch.cat(outputs[i]).double()
        a = layer.activation
        assert a.mean == pytest.approx(out.mean().item(), rel=1e-5, abs=1e-7)
        assert a.std == pytest.approx(out.std(correction=0).item(), rel=1e-5)
        assert a.min == pytest.approx(out.min().item()) and a.max == pytest.approx(out.max().item())
        zeros = (out == 0).double().mean().item()
        if i % 2 == 0:  # linear: zeros are counted only when the range implies them (else unknown)
            implied = out.min() > 0 or out.max() < 0 or out.min() == out.max() == 0
            assert a.zero_fraction == (pytest.approx(zeros) if implied else None)
        else:  # an activation: counted
            assert a.zero_fraction == pytest.approx(zeros)
        assert a.centring == pytest.approx(abs(out.mean().item()) / out.std(correction=0).item(), rel=1e-5)
        # signal std: each unit's variance across samples, averaged over units (per batch, then averaged)
        per_batch = [o.double().var(dim=0, correction=0).mean().item() for o in outputs[i]]
        assert a.signal_std == pytest.approx(math.sqrt(sum(per_batch) / len(per_batch)), rel=1e-5)
        g = torch.cat(grads[i]).double()
        assert layer.grad.output_rms == pytest.approx(g.square().mean().sqrt().item(), rel=1e-5)
    relu = torch.cat(outputs[1])
    assert report.layers[1].activation.dead_ratio == pytest.approx((relu.amax(dim=0) == 0).double().mean().item())
    sig = torch.cat(outputs[3])
    assert report.layers[3].activation.saturation == pytest.approx(((sig < 0.01) | (sig > 0.99)).double().mean().item())
    tanh = torch.cat(outputs[5])
    assert report.layers[5].activation.saturation == pytest.approx((tanh.abs() > 0.99).double().mean().item())


def test_parameter_gradients_are_the_mean_over_batches():
    torch.manual_seed(0)
    data = torch.randn(90, 12)
    model = _model()
    report = analyze(model, data, batch_size=30, batches=3)
    for b, x in enumerate(data.split(30)):
        compute_loss("projection", model(x), None, seed=b).backward()
    for p in report.parameters:
        expected = dict(model.named_parameters())[p.name].grad.norm().item() / 3
        assert p.grad_norm == pytest.approx(expected, rel=1e-5)
        assert p.ratio == pytest.approx(expected / dict(model.named_parameters())[p.name].norm().item(), rel=1e-5)


@pytest.mark.parametrize("offset", [0.0, 1000.0], ids=["centred", "large-mean"])
def test_channel_first_statistics_match_full_tensor_reference(offset):
    """Conv/BN outputs take the uncentred shortcut when it keeps precision and the exact pass when a
    large mean would cancel it; either way the report equals the float64 reference over two batches."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3),
                          nn.Sigmoid(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with torch.no_grad():
        model[0].bias += offset  # a mean ~2000x the spread: raw - between would lose the variance
    data = torch.randn(12, 3, 8, 8)
    report = analyze(model, data, batch_size=6, batches=2)
    outputs, _ = _reference(model, list(data.split(6)))
    for i in (0, 1, 2, 3, 4):
        out = torch.cat(outputs[i]).double()
        a = report.layers[i].activation
        assert a.mean == pytest.approx(out.mean().item(), rel=1e-5, abs=1e-6)
        assert a.std == pytest.approx(out.std(correction=0).item(), rel=1e-4)
        per_batch = [o.double().transpose(0, 1).reshape(o.shape[1], -1).var(dim=1, correction=0).mean().item()
                     for o in outputs[i]]
        assert a.signal_std == pytest.approx(math.sqrt(sum(per_batch) / len(per_batch)), rel=1e-4)
        assert a.min == pytest.approx(out.min().item()) and a.max == pytest.approx(out.max().item())
    assert report.layers[2].activation.zero_fraction == pytest.approx((torch.cat(outputs[2]) == 0).double().mean().item())
    assert report.layers[0].activation.zero_fraction == (0.0 if torch.cat(outputs[0]).min() > 0 else None)


def test_conv_dead_units_are_channels():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        conv.bias[:3] = -100.0  # three channels can never fire
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 2))
    report = analyze(model, torch.randn(4, 3, 8, 8))
    relu = report.layers[1].activation
    assert relu.units == 8
    assert relu.dead_ratio == pytest.approx(3 / 8)
    assert relu.samples_per_unit == 4 * 8 * 8


def test_large_values_are_exact_and_overflow_is_not_called_nan():
    model = nn.Sequential(nn.Linear(1, 1, bias=False))
    x = torch.randn(64, 1) * 10
    nn.init.constant_(model[0].weight, 1e17)  # outputs ~1e18: squares ~1e36 still fit float32
    a = analyze(model, x).layers[0].activation
    assert a.std == pytest.approx((x.double() * 1e17).std(correction=0).item(), rel=1e-5)

    nn.init.constant_(model[0].weight, 1e19)  # squares beyond float32: the std overflows to inf
    report = analyze(model, x)
    a = report.layers[0].activation
    assert a.std == math.inf and a.nonfinite_units == 0
    kinds = {f.kind for f in report.findings}
    assert "exploding_activation" in kinds and "nonfinite" not in kinds


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=2, max_size=40),
        min_size=1, max_size=5,
    )
)
def test_merging_observations_equals_concatenation(chunks):
    rows = []
    for chunk in chunks:
        t = torch.tensor(chunk, dtype=torch.float64)
        rows.append((t.numel(), 1, [t.sum().item(), (t - t.mean()).square().sum().item(), t.sum().item() ** 2]))
    mean, var, _ = merge_rows(rows)
    everything = torch.tensor([v for c in chunks for v in c], dtype=torch.float64)
    assert mean == pytest.approx(everything.mean().item(), rel=1e-9, abs=1e-6)
    assert var == pytest.approx(everything.var(correction=0).item(), rel=1e-6, abs=1e-3)


def test_single_rows_equal_merge_rows_bitwise() -> None:
    """The vectorised one-observation merge gives merge_rows' bits, NaN/Inf and tiny counts included."""
    rng = np.random.default_rng(0)
    rows = [(int(n), int(u), [float(a), float(b), float(c)]) for n, u, a, b, c in zip(
        rng.integers(1, 5000, 200) * 4, [1, 2, 4, 4] * 50, rng.normal(size=200) * 1e3, rng.random(200) * 1e4,
        rng.random(200) * 1e6)]
    rows += [(8, 4, [math.inf, 1.0, 2.0]), (8, 4, [1.0, math.nan, 2.0]), (8, 4, [1.0, 2.0, math.inf]),
             (4, 4, [0.0, 0.0, 0.0]), (8, 8, [-3.0, 0.0, 9.0]), (6, 2, [-0.0, 0.0, 0.0])]
    n = np.array([r[0] for r in rows], dtype=np.float64)
    units = np.array([r[1] for r in rows], dtype=np.float64)
    f = np.array([r[2] for r in rows])
    means, variances, signals = _single_rows(n, units, f[:, 0], f[:, 1], f[:, 2])
    for k, row in enumerate(rows):
        expected = merge_rows([row])
        got = (means[k], variances[k], signals[k])
        assert [repr(v) for v in got] == [repr(v) for v in expected], row
