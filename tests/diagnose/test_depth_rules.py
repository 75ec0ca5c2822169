"""Depth-trend rules on synthetic rows: the ratio, the reference layer, segments and the absolute guards."""

from __future__ import annotations

import math

import pytest

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.registry import kind
from layers import chain, row

T = Thresholds()


def find(name: str, layers, found=(), paths=()):  # noqa: ANN001, ANN201
    return kind(name).rule(Evidence(layers, T, found, paths))


def test_vanishing_gradient_is_the_ratio_to_the_layer_nearest_the_output() -> None:
    layers = chain([10.0 ** -(5 - i) for i in range(6)])  # 1e-5 ... 1: ten times per layer
    (f,) = find("vanishing_gradient", layers)
    assert f.layer == "0" and f.value == pytest.approx(1e-5) and f.threshold == T.vanishing_gradient_ratio
    assert "over 6 weight layers (0.1x per layer)" in f.message and f.severity == "error"
    assert find("exploding_gradient", layers) == []


def test_a_ratio_inside_the_thresholds_is_no_finding() -> None:
    layers = chain([0.2, 0.5, 1.0, 1.0])  # 0.2 > 1e-3
    assert find("vanishing_gradient", layers) == [] and find("exploding_gradient", layers) == []


def test_trends_need_min_depth_weight_layers() -> None:
    assert find("vanishing_gradient", chain([1e-9, 1.0])) == []  # two layers < min_depth 3
    assert len(find("vanishing_gradient", chain([1e-9, 1e-5, 1.0]))) == 1


def test_exploding_gradient_trend_and_absolute_guard() -> None:
    (trend,) = find("exploding_gradient", chain([1e5, 1e3, 10.0, 1.0]))
    assert trend.layer == "0" and trend.value == pytest.approx(1e5)
    loud = chain([1.0, 1.0]) + [row(2, "relu", grad=2e6)]  # too shallow for a trend, but huge
    (guard,) = find("exploding_gradient", loud)
    assert guard.layer == "2" and guard.value == 2e6 and "absolute limit" in guard.message


def test_a_change_of_size_per_sample_starts_a_new_segment() -> None:
    """A classifier head (64 -> 4 features per sample, 16x) is not compared with the trunk."""
    trunk = chain([1.0, 1.0, 1.0])
    head = [row(3, grad=1e-6, shape=(32, 4)), row(4, grad=1e-6, shape=(32, 4)), row(5, grad=1e-6, shape=(32, 4))]
    assert find("exploding_gradient", trunk + head) == []  # each segment is flat
    assert len(find("exploding_gradient", chain([1.0, 1.0, 1.0, 1e-6, 1e-6, 1e-6]))) == 1  # one segment: it is not


def test_vanishing_and_exploding_activations_are_measured_from_the_input_side() -> None:
    (f,) = find("vanishing_activation", chain([1.0] * 4, stds=[1.0, 0.1, 1e-2, 1e-4]))
    assert f.layer == "3" and f.value == pytest.approx(1e-4) and f.severity == "warning"
    (g,) = find("exploding_activation", chain([1.0] * 4, stds=[1.0, 10.0, 1e2, 1e4]))
    assert g.layer == "3" and g.value == pytest.approx(1e4) and g.severity == "error"


def test_nan_signals_are_left_out_of_trends() -> None:
    layers = chain([math.nan, 1e-9, 1e-5, 1.0])
    (f,) = find("vanishing_gradient", layers)
    assert f.layer == "1"
