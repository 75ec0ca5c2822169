"""--sample-stats K: forward statistics on K seeded units per layer, checked against a slow
reference on exactly those units; gradients stay exact."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gradcheck_cli import analyze

UNITS, K = 256, 32


def half_dead() -> nn.Sequential:
    """Linear(64, 256) + ReLU whose odd units have bias -100 (dead for every input)."""
    torch.manual_seed(0)
    linear = nn.Linear(64, UNITS)
    nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
    with torch.no_grad():
        linear.bias.zero_()
        linear.bias[1::2] = -100.0
    return nn.Sequential(linear, nn.ReLU(), nn.Linear(UNITS, 8))


def _chosen(seed: int, layer_index: int) -> torch.Tensor:
    """The documented rule: a permutation seeded by (seed, layer), its first K units, sorted."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + layer_index)
    return torch.randperm(UNITS, generator=generator)[:K].sort().values


@pytest.mark.parametrize("seed", [0, 7])
def test_sampled_statistics_are_exact_on_the_sampled_units(seed: int) -> None:
    model, x = half_dead(), torch.randn(512, 64)
    full = analyze(model, x, seed=seed)
    sampled = analyze(model, x, seed=seed, sample_stats=K)
    relu = next(l for l in sampled.layers if l.kind == "relu")
    with torch.no_grad():
        out = model[1](model[0](x))[:, _chosen(seed, relu.index)].double()
    reference_dead = float((out.sum(0) == 0).double().mean())
    assert relu.activation.units == K
    assert relu.activation.dead_ratio == pytest.approx(reference_dead, abs=1e-12)
    assert relu.activation.mean == pytest.approx(float(out.mean()), rel=1e-5)
    assert relu.activation.std == pytest.approx(float(out.std(correction=0)), rel=1e-4)
    assert relu.activation.zero_fraction == pytest.approx(float((out == 0).double().mean()), abs=1e-9)
    # the estimate is close to the whole layer's truth (0.5 dead by construction) ...
    assert abs(relu.activation.dead_ratio - 0.5) < 0.25
    assert next(l for l in full.layers if l.kind == "relu").activation.dead_ratio == 0.5
    # ... and gradients and parameters are measured in full either way
    for a, b in zip(full.layers, sampled.layers):
        assert a.grad.output_rms == pytest.approx(b.grad.output_rms, rel=1e-6)
    assert [p.grad_norm for p in full.parameters] == pytest.approx([p.grad_norm for p in sampled.parameters], rel=1e-6)
    assert sampled.run.sample_stats == K and any("--sample-stats" in note for note in sampled.notes)
    assert full.run.sample_stats is None and not any("--sample-stats" in note for note in full.notes)


def test_same_units_in_every_batch() -> None:
    """Dead means dead for every sample: with several batches the sampled units must not change."""
    model, x = half_dead(), torch.randn(512, 64)
    one = analyze(model, x, sample_stats=K)
    four = analyze(model, x, sample_stats=K, batch_size=128, batches=4)
    relu = lambda r: next(l for l in r.layers if l.kind == "relu").activation  # noqa: E731
    assert relu(four).dead_ratio == relu(one).dead_ratio
    assert relu(four).samples_per_unit == relu(one).samples_per_unit == 512


def test_layers_with_fewer_units_than_k_are_measured_in_full() -> None:
    model, x = half_dead(), torch.randn(64, 64)
    sampled = analyze(model, x, sample_stats=K)
    head = sampled.layers[-1]
    assert head.activation.units is None or head.activation.units == 8
    assert head.activation.std == pytest.approx(analyze(model, x).layers[-1].activation.std, rel=1e-6)


def test_cli_and_config(invoke, tmp_path, monkeypatch) -> None:
    from conftest import EXAMPLES

    model = f"{EXAMPLES / 'models.py'}:he_relu_mlp"
    result = invoke("analyze", model, "-s", "64,256", "--sample-stats", "16", "-F", "json")
    assert json.loads(result.stdout)["run"]["sample_stats"] == 16
    assert invoke("analyze", model, "-s", "64,256", "--sample-stats", "0").exit_code == 2
    (tmp_path / "pyproject.toml").write_text("[tool.gradcheck]\nsample-stats = 8\n")
    monkeypatch.chdir(tmp_path)
    assert json.loads(invoke("analyze", model, "-s", "64,256", "-F", "json").stdout)["run"]["sample_stats"] == 8
