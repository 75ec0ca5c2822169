"""Init-variance recommendations (pure functions; the maths is in THEORY.md section 4).

For a weight layer we find the activation that follows it in forward order, pick the scheme
that keeps the signal variance constant through that pair (He for rectifiers with the gain of
``torch.nn.init.calculate_gain``, Xavier for tanh/sigmoid/linear, LeCun for SELU), and compare
with the weights' current RMS.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Sequence

from gradcheck_cli.layers import (
    ACTIVATION_KINDS,
    LayerInfo,
    NORM_KINDS,
    WEIGHT_KINDS,
    init_scheme_for,
)
from gradcheck_cli.records import record
from gradcheck_cli.report.model import InitAdvice

# Kinds that end the look-ahead: the signal enters another weighted transformation.
_STOPS = WEIGHT_KINDS | {"embedding", "attention", "rnn"}
_MATCH_TOLERANCE = 0.1


@record
class WeightSummary:
    shape: tuple[int, ...]
    rms: float


def fans(kind: str, shape: Sequence[int], transposed: bool = False, groups: int = 1) -> tuple[int, int]:
    """fan_in, fan_out as torch.nn.init computes them (conv: channels x receptive field), except that a
    grouped conv's fan_out counts only the outputs of its group.

    A conv weight is (out, in/groups, *kernel), so fan_in = in/groups x kernel is right from the shape
    alone. torch.nn.init takes fan_out = out x kernel whatever the groups, but an input channel only
    reaches the out/groups outputs of its own group: a depthwise conv (groups = in = out) has fan_out
    = kernel, not out x kernel. Xavier's fan_out must be what the backward pass actually sums over,
    or it recommends too small a std for every grouped conv, so we divide by groups here.
    """
    if len(shape) < 2:
        return (shape[0] if shape else 1), 1
    out_dim, in_dim = (shape[1], shape[0]) if transposed else (shape[0], shape[1])
    receptive = math.prod(shape[2:]) if kind in ("conv", "conv_transpose") else 1
    if kind == "conv" and groups > 1 and out_dim % groups == 0:
        out_dim //= groups
    return in_dim * receptive, out_dim * receptive


def following_activation(layers: Sequence[LayerInfo], index: int) -> tuple[str, float | None, bool]:
    """(activation kind or ``linear``, its negative slope if any, whether a norm layer comes first)."""
    normalized = False
    for later in itertools.islice(layers, index + 1, None):
        if later.kind in NORM_KINDS:
            normalized = True
        elif later.kind in ACTIVATION_KINDS:
            return later.kind, later.attrs.get("negative_slope"), normalized
        elif later.kind in _STOPS:
            break
    return "linear", None, normalized


def classify_init(fan_in: int, fan_out: int, weight: WeightSummary) -> str:
    """Name the init whose std the weights have (within 10%); several names when they coincide.

    PyTorch's default is U(+-1/sqrt(fan_in)), Var = 1/(3 fan_in). Judged on the RMS alone (already
    measured; a max-abs pass to tell uniform from normal would cost a pass over every weight).
    """
    return _classify(_candidate_stds(fan_in, fan_out), weight.rms)


def _candidate_stds(fan_in: int, fan_out: int) -> tuple[tuple[str, float], ...]:
    return (
        ("pytorch_default", 1.0 / math.sqrt(3.0 * fan_in)),
        ("he", math.sqrt(2.0 / fan_in)),
        ("xavier", math.sqrt(2.0 / (fan_in + fan_out))),
        ("lecun", 1.0 / math.sqrt(fan_in)),
    )


def _classify(candidates: tuple[tuple[str, float], ...], rms: float) -> str:
    matches = [name for name, std in candidates if _close(rms, std)]
    return "/".join(matches) if matches else "custom"


def _close(value: float, reference: float) -> bool:
    return reference > 0 and abs(value / reference - 1.0) <= _MATCH_TOLERANCE


DEEP_TANH = 10
"""Weight layers followed by tanh, in a network without normalisation, from which the advice is gain 1."""
EDGE_OF_CHAOS = ("gain 1, not 5/3: in a plain tanh stack this deep, sigma_w = 1 with zero bias is the edge of chaos; "
                 "gain 5/3 is on the chaotic side, where gradients grow and inputs decorrelate with depth (Poole et "
                 "al. 2016, Schoenholz et al. 2017); normalisation or shortcuts are the fix that scales with depth")


REPARAMETRIZED = ("the weight is reparametrised (weight or spectral norm): its scale comes from the "
                  "parametrisation, not from the init of the tensor it is computed from")


def deep_tanh_stack(layers: Sequence[LayerInfo]) -> bool:
    """A plain (unnormalised) network with at least DEEP_TANH weight layers that feed tanh."""
    if any(layer.kind in NORM_KINDS for layer in layers):
        return False
    tanh_fed = sum(1 for i, layer in enumerate(layers)
                   if layer.kind in WEIGHT_KINDS and following_activation(layers, i)[0] == "tanh")
    return tanh_fed >= DEEP_TANH


def init_advice(layers: Sequence[LayerInfo], index: int, weight: WeightSummary, deep_tanh: bool = False,
                unit_spread: float | None = None) -> InitAdvice:
    """``deep_tanh`` (see :func:`deep_tanh_stack`) makes the tanh advice depth-aware: gain 1.
    ``unit_spread``: how different the units' weights are (measured; carried into the advice)."""
    layer = layers[index]
    transposed = layer.type_name == "Conv1D" or bool(layer.attrs.get("transposed_weight"))
    activation, slope, normalized = following_activation(layers, index)
    plan = _plan(layer.kind, tuple(weight.shape), transposed, int(layer.attrs.get("groups", 1)), activation, slope,
                 normalized, bool(layer.attrs.get("reparametrized")), deep_tanh and activation == "tanh")
    return InitAdvice(
        note=plan.note,
        call=plan.call,
        fan_in=plan.fan_in,
        fan_out=plan.fan_out,
        activation_after=activation,
        normalized_after=plan.normalized,
        scheme=plan.scheme,
        gain=plan.gain,
        current_std=weight.rms,
        recommended_std=plan.recommended,
        ratio=weight.rms / plan.recommended if plan.recommended > 0 else math.nan,
        current_scheme=_classify(plan.candidates, weight.rms),
        unit_spread=unit_spread,
    )


@record
class _Plan:
    fan_in: int
    fan_out: int
    scheme: str
    gain: float
    recommended: float
    call: str
    note: str | None
    normalized: bool
    candidates: tuple[tuple[str, float], ...]


@functools.lru_cache(maxsize=4096)
def _plan(kind: str, shape: tuple[int, ...], transposed: bool, groups: int, activation: str, slope: float | None,
          normalized: bool, reparametrized: bool, edge_of_chaos: bool) -> _Plan:
    """Everything of the advice but the measured RMS: a pure function of the layer's structure, so
    cached (a model's layers repeat a few shapes; 60 rows took 0.4 ms to advise, most of it here)."""
    fan_in, fan_out = fans(kind, shape, transposed, groups)
    scheme = init_scheme_for(activation, slope)
    note = None
    if reparametrized:
        normalized, note = True, REPARAMETRIZED
    elif edge_of_chaos:
        scheme, note = dataclasses.replace(scheme, gain=1.0), EDGE_OF_CHAOS
    return _Plan(fan_in, fan_out, scheme.scheme, scheme.gain, scheme.recommended_std(fan_in, fan_out),
                 init_call(scheme.scheme, scheme.gain, activation), note, normalized, _candidate_stds(fan_in, fan_out))


def init_call(scheme: str, gain: float, activation_after: str) -> str:
    """The one line of PyTorch that applies the recommendation."""
    if scheme == "he":
        if activation_after in ("leaky_relu", "prelu"):
            slope = math.sqrt(max(2.0 / gain**2 - 1.0, 0.0))
            return f"nn.init.kaiming_normal_(w, a={slope:.3g}, nonlinearity='leaky_relu')"
        return "nn.init.kaiming_normal_(w, nonlinearity='relu')"
    if scheme == "lecun":
        return "nn.init.normal_(w, std=1/math.sqrt(fan_in))"
    gain_text = "nn.init.calculate_gain('tanh')" if gain != 1.0 else "1.0"
    return f"nn.init.xavier_normal_(w, gain={gain_text})"

