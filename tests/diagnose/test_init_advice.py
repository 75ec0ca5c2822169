"""Init advice on synthetic layer rows (no model run): fans, the following activation, the scheme,
what the weights look like now, the call, and the depth-aware tanh advice."""

from __future__ import annotations

import math

import pytest

from gradcheck_cli.diagnose.init_advice import (
    WeightSummary,
    classify_init,
    deep_tanh_stack,
    fans,
    following_activation,
    init_advice,
)
from gradcheck_cli.layers import LayerInfo


def rows(*kinds: str) -> list[LayerInfo]:
    return [LayerInfo(i, str(i), kind, kind) for i, kind in enumerate(kinds)]


def test_fans_follow_torch_nn_init() -> None:
    assert fans("linear", (64, 32)) == (32, 64)
    assert fans("conv", (16, 3, 3, 3)) == (27, 144)  # channels x receptive field
    assert fans("linear", (32, 64), transposed=True) == (32, 64)  # HF Conv1D stores (in, out)


def test_following_activation_skips_plumbing_and_notes_normalisation() -> None:
    layers = rows("linear", "dropout", "batchnorm", "relu", "linear")
    assert following_activation(layers, 0) == ("relu", None, True)
    assert following_activation(rows("linear", "linear", "relu"), 0) == ("linear", None, False)  # a weight layer stops


@pytest.mark.parametrize(("activation", "scheme", "gain"), [
    ("relu", "he", math.sqrt(2)), ("tanh", "xavier", 5 / 3), ("sigmoid", "xavier", 1.0), ("selu", "lecun", 1.0),
])
def test_scheme_and_gain_per_activation(activation: str, scheme: str, gain: float) -> None:
    advice = init_advice(rows("linear", activation), 0, WeightSummary((100, 100), 0.1))
    assert (advice.scheme, advice.gain) == (scheme, pytest.approx(gain)) and advice.call.startswith("nn.init.")
    assert advice.ratio == pytest.approx(0.1 / advice.recommended_std)


def test_what_the_weights_look_like_now() -> None:
    fan_in = 300
    assert classify_init(fan_in, 300, WeightSummary((300, 300), 1 / math.sqrt(3 * fan_in))) == "pytorch_default"
    assert classify_init(fan_in, 300, WeightSummary((300, 300), math.sqrt(2 / fan_in))) == "he"
    assert classify_init(fan_in, 300, WeightSummary((300, 300), 0.5)) == "custom"


def test_tanh_advice_is_depth_aware() -> None:
    deep = rows(*["linear", "tanh"] * 10)
    assert deep_tanh_stack(deep) and not deep_tanh_stack(rows(*["linear", "tanh"] * 9))
    assert not deep_tanh_stack(rows(*["linear", "layernorm", "tanh"] * 12))  # normalised: textbook advice
    advice = init_advice(deep, 0, WeightSummary((64, 64), 0.1), deep_tanh=True)
    assert advice.gain == 1.0 and "edge of chaos" in advice.note
    assert advice.recommended_std == pytest.approx(1 / 8)  # sigma_w = 1: std 1/sqrt(fan_in) for a square layer
