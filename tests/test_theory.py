"""The verdicts checked against first-principles theory (THEORY.md), on models built here."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import chain, mlp
from torch import nn

from gradcheck_cli import analyze


def _layers(report, kind):
    return [l for l in report.layers if l.kind == kind]


def _kinds(report):
    return {f.kind for f in report.findings}


def test_sigmoid_chain_shrinks_gradient_by_at_most_w_over_4_per_layer():
    """dL/dz_{l-1} = sigma'(z_{l-1}) * w_l * dL/dz_l and sigma' <= 1/4, so each step back is <= |w_l|/4."""
    torch.manual_seed(0)
    depth = 12
    layers = []
    for _ in range(depth):
        linear = nn.Linear(1, 1, bias=False)
        nn.init.normal_(linear.weight)  # N(0, 1) weights
        layers += [linear, nn.Sigmoid()]
    model = nn.Sequential(*layers)
    report = analyze(model, torch.randn(512, 1))

    linears = _layers(report, "linear")
    weights = [abs(model[2 * i].weight.item()) for i in range(depth)]
    for i in range(1, depth):
        ratio = linears[i - 1].grad.output_rms / linears[i].grad.output_rms
        assert ratio <= weights[i] / 4 * (1 + 1e-4), (i, ratio, weights[i])
    total = linears[0].grad.output_rms / linears[-1].grad.output_rms
    assert total <= math.prod(weights[1:]) / 4 ** (depth - 1) * (1 + 1e-3)
    assert "vanishing_gradient" in _kinds(report)


def test_weight_02_chain_vanishes_in_both_directions():
    report = analyze(chain(30, 0.2), torch.randn(64, 1))
    linears = _layers(report, "linear")
    # Identity activations: each layer scales both signals by exactly 0.2.
    assert linears[-1].activation.std / linears[0].activation.std == pytest.approx(0.2**29, rel=1e-3)
    assert linears[0].grad.output_rms / linears[-1].grad.output_rms == pytest.approx(0.2**29, rel=1e-3)
    assert {"vanishing_gradient", "vanishing_activation"} <= _kinds(report)
    assert report.summary.exit_code == 1  # a vanishing gradient is an error: the default gate fails


def test_weight_5_chain_explodes_and_fails_by_default():
    report = analyze(chain(30, 5.0), torch.randn(64, 1))
    linears = _layers(report, "linear")
    # Each step back multiplies the gradient by exactly 5 (until float32 squares overflow past ~1e19,
    # where the statistic saturates at inf and the verdict still stands).
    grads = [l.grad.output_rms for l in linears]
    in_range = [i for i in range(1, 30) if math.isfinite(grads[i - 1])]
    assert len(in_range) >= 25
    for i in in_range:
        assert grads[i - 1] / grads[i] == pytest.approx(5.0, rel=1e-4)
    assert {"exploding_gradient", "exploding_activation"} <= _kinds(report)
    assert report.summary.exit_code == 1
    assert report.summary.status == "fail"


def test_relu_with_bias_minus_10_is_dead():
    torch.manual_seed(0)
    dead = nn.Linear(32, 64)
    nn.init.kaiming_normal_(dead.weight)
    nn.init.constant_(dead.bias, -10.0)
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), dead, nn.ReLU(), nn.Linear(64, 4))
    report = analyze(model, torch.randn(256, 32))
    relus = _layers(report, "relu")
    assert relus[1].activation.dead_ratio == pytest.approx(1.0)
    assert relus[1].activation.units == 64
    # The healthy first ReLU: about half zeros per sample (sparsity) but no dead units.
    assert relus[0].activation.dead_ratio == 0.0
    assert 0.3 < relus[0].activation.zero_fraction < 0.7
    dead_findings = [f for f in report.findings if f.kind == "dead_relu"]
    assert [f.layer for f in dead_findings] == [report.layers[3].name]
    assert dead_findings[0].severity == "error"
    # Nothing flows back through a fully dead layer.
    assert report.layers[2].grad.output_rms == 0.0


def test_sigmoid_is_not_zero_centred_but_tanh_is():
    def net(act):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 64), act(), nn.Linear(64, 64), act(), nn.Linear(64, 1))

    x = torch.randn(512, 16)
    sig = analyze(net(nn.Sigmoid), x)
    tanh = analyze(net(nn.Tanh), x)
    assert all(l.activation.centring > 1.0 for l in _layers(sig, "sigmoid"))
    assert all(l.activation.centring < 0.3 for l in _layers(tanh, "tanh"))
    assert "not_zero_centred" in _kinds(sig)
    assert "not_zero_centred" not in _kinds(tanh)


def test_saturation_counts_outputs_near_the_asymptotes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 128), nn.Tanh(), nn.Linear(128, 1))
    with torch.no_grad():
        model[0].weight.mul_(20.0)  # huge pre-activations: tanh pinned at +-1
    x = torch.randn(256, 8)
    report = analyze(model, x)
    with torch.no_grad():
        expected = (torch.tanh(model[0](x)).abs() >= 0.99).float().mean().item()
    assert report.layers[1].activation.saturation == pytest.approx(expected, abs=1e-6)
    assert expected > 0.8
    assert "saturated_activation" in _kinds(report)


@pytest.mark.parametrize("fan_in,fan_out", [(64, 32), (300, 10), (7, 900)])
def test_he_recommendation_is_sqrt_2_over_fan_in(fan_in, fan_out):
    model = nn.Sequential(nn.Linear(fan_in, fan_out), nn.ReLU(), nn.Linear(fan_out, 2))
    report = analyze(model, torch.randn(8, fan_in))
    advice = report.layers[0].init
    assert (advice.fan_in, advice.fan_out) == (fan_in, fan_out)
    assert advice.scheme == "he" and advice.activation_after == "relu"
    assert advice.recommended_std == pytest.approx(math.sqrt(2.0 / fan_in))
    assert advice.current_scheme == "pytorch_default"
    assert advice.current_std == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.15)


def test_init_gains_follow_the_activation():
    model = nn.Sequential(
        nn.Linear(50, 50), nn.Tanh(), nn.Linear(50, 50), nn.LeakyReLU(0.2),
        nn.Linear(50, 50), nn.SELU(), nn.Linear(50, 50), nn.Sigmoid(), nn.Linear(50, 3),
    )
    report = analyze(model, torch.randn(16, 50))
    advice = [l.init for l in report.layers if l.init]
    assert [(a.scheme, a.activation_after) for a in advice] == [
        ("xavier", "tanh"), ("he", "leaky_relu"), ("lecun", "selu"), ("xavier", "sigmoid"), ("xavier", "linear"),
    ]
    assert advice[0].recommended_std == pytest.approx(5 / 3 * math.sqrt(2 / 100))
    assert advice[1].recommended_std == pytest.approx(math.sqrt(2 / (1 + 0.2**2)) / math.sqrt(50))
    assert advice[2].recommended_std == pytest.approx(1 / math.sqrt(50))
    assert advice[4].recommended_std == pytest.approx(math.sqrt(2 / 53))


def test_conv_fans_include_the_receptive_field():
    model = nn.Sequential(nn.Conv2d(3, 8, 5), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
    report = analyze(model, torch.randn(4, 3, 8, 8))
    advice = report.layers[0].init
    assert (advice.fan_in, advice.fan_out) == (3 * 25, 8 * 25)
    assert advice.recommended_std == pytest.approx(math.sqrt(2 / 75))


def test_xavier_relu_mlp_vanishes_and_blames_the_init():
    """He et al. 2015: a 30-layer ReLU net with Xavier init loses ~sqrt(2) of the signal per layer."""
    model = mlp(30, 128, nn.ReLU, "xavier")
    report = analyze(model, torch.randn(256, 128))
    kinds = _kinds(report)
    assert {"vanishing_activation", "vanishing_gradient", "init_mismatch"} <= kinds
    linears = _layers(report, "linear")
    per_layer = (linears[-1].activation.signal_std / linears[0].activation.signal_std) ** (1 / 29)
    assert 0.55 < per_layer < 0.8  # theory: 1/sqrt(2) = 0.707
    mismatches = [f for f in report.findings if f.kind == "init_mismatch"]
    assert all(f.value == pytest.approx(1 / math.sqrt(2), rel=0.05) for f in mismatches)


def test_nan_is_located_at_the_first_layer_that_produces_it():
    class Poison(nn.Module):
        def forward(self, x):
            return x * torch.where(torch.arange(x.shape[1]) == 0, torch.tensor(float("nan")), torch.tensor(1.0))

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), Poison(), nn.Linear(8, 2))
    report = analyze(model, torch.randn(16, 4))
    assert report.summary.first_nonfinite_layer == "3"
    nonfinite = [f for f in report.findings if f.kind == "nonfinite"]
    assert nonfinite and nonfinite[0].layer == "3"
    assert report.summary.exit_code == 1
    assert report.layers[3].activation.nonfinite_units == 1  # one NaN feature column
