"""Per-layer rules on synthetic rows: dead units, saturation, centring, non-finite values, init scale."""

from __future__ import annotations

import pytest

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.diagnose.evaluate import Evidence, evaluate
from gradcheck_cli.diagnose.registry import kind
from gradcheck_cli.diagnose.rules.dead_relu import chance_dead
from layers import activation, chain, init, row

T = Thresholds()


def find(name: str, layers, found=(), paths=()):  # noqa: ANN001, ANN201
    return kind(name).rule(Evidence(layers, T, found, paths))


def relu(index: int, dead: float, zero: float = 0.5, samples: float = 256, units: int = 64):  # noqa: ANN201
    return row(index, "relu", act=activation(1.0, mean=0.5, zero=max(zero, dead), dead=dead, units=units, samples=samples))


def test_dead_units_above_the_ratio_warn_and_a_fully_dead_layer_is_an_error() -> None:
    assert find("dead_relu", [relu(0, 0.4)]) == []
    (some,) = find("dead_relu", [relu(0, 0.6)])
    assert some.severity == "warning" and some.value == 0.6 and "60% of the 64 units" in some.message
    (every,) = find("dead_relu", [relu(0, 1.0)])
    assert every.severity == "error"


def test_dead_units_are_not_judged_on_too_few_samples() -> None:
    """One observation per unit, 90% zeros, 60% 'dead': a live unit is silent with chance 3/4, so chance
    alone explains the count; with 256 observations it cannot."""
    assert chance_dead(0.9, 0.6, 1) == pytest.approx(0.75)
    assert find("dead_relu", [relu(0, 0.6, zero=0.9, samples=1)]) == []
    assert len(find("dead_relu", [relu(0, 0.6, zero=0.9, samples=256)])) == 1


def test_saturation_centring_and_nonfinite() -> None:
    sat = row(0, "sigmoid", act=activation(0.4, mean=0.5, saturation=0.3))
    assert [f.kind for f in find("saturated_activation", [sat])] == ["saturated_activation"]
    sigmoid = row(0, "sigmoid", act=activation(0.2, mean=0.5))  # |mean|/std 2.5
    assert [f.value for f in find("not_zero_centred", [sigmoid, row(1)])] == [2.5]
    assert find("not_zero_centred", [row(0), sigmoid]) == []  # after the last weight layer: the output's business
    broken = [row(0), row(1, act=activation(1.0, nonfinite_units=3)), row(2, grad_nonfinite=True)]
    (f,) = find("nonfinite", broken)
    assert f.layer == "1" and f.value == 3 and "first layer whose output" in f.message
    (g,) = find("nonfinite", [row(0, grad_nonfinite=True), row(1, grad_nonfinite=True), row(2)])
    assert g.layer == "1" and "backward pass" in g.message


def test_init_mismatch_gross_compounding_and_exemptions() -> None:
    layers = [row(0, advice=init(5.0)), row(1, advice=init(0.8)), row(2, advice=init(0.1))]
    assert [f.layer for f in find("init_mismatch", layers)] == ["0"]  # 1 is only 20% off; a small head is a choice
    vanishing = find("vanishing_gradient", chain([1e-9, 1e-5, 1.0]))
    assert [f.layer for f in find("init_mismatch", layers, vanishing)] == ["0", "1"]  # the trend lowers the bar
    big_head = layers[:2] + [row(2, advice=init(5.0), std=4.0)]
    (head,) = [f for f in find("init_mismatch", big_head) if f.layer == "2"]
    assert "output layer" in head.message and head.value == 5.0
    scaled_input = layers[:2] + [row(2, advice=init(5.0), std=1.0)]  # outputs at unit scale: the input was scaled
    assert not [f for f in find("init_mismatch", scaled_input) if f.layer == "2"]
    normalised = layers + [row(3, "layernorm")]
    assert find("init_mismatch", normalised) == []
    after_norm = [row(0, advice=init(5.0, normalized=True)), row(1, advice=init(1.0))]
    assert find("init_mismatch", after_norm) == []


def test_evaluate_orders_by_layer_then_severity() -> None:
    layers = [relu(0, 1.0), row(1, act=activation(1.0, nonfinite_units=1)), relu(2, 0.6)]
    findings = evaluate(Evidence(layers, T))
    assert [(f.layer, f.kind) for f in findings] == [("0", "dead_relu"), ("1", "nonfinite"), ("2", "dead_relu")]
