"""Measurements + thresholds -> findings. One small function per finding kind.

Vanishing/exploding is judged on the *trend* of the signals across the weight layers (first-to-
last ratio, and the per-layer gain it implies) plus absolute guards -- not on weight-gradient
norms, which stay nearly flat even when both signals decay (THEORY.md section 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gradcheck_cli.advice import HINTS
from gradcheck_cli.kinds import ACTIVATION_KINDS, NORM_KINDS, WEIGHT_KINDS
from gradcheck_cli.options import Thresholds
from gradcheck_cli.report import SEVERITIES, Finding, LayerReport

Rule = Callable[[Sequence[LayerReport], Thresholds], list[Finding]]


def _finding(kind: str, severity: str, layer: str, value: float, threshold: float, message: str) -> Finding:
    return Finding(kind, severity, layer, value, threshold, message, HINTS[kind])


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def forward_signal(layer: LayerReport) -> float | None:
    """The input-dependent activation scale (signal std), or the plain std where it is unmeasurable."""
    a = layer.activation
    if a is None:
        return None
    return a.signal_std if a.signal_std is not None else a.std


def depth_path(layers: Sequence[LayerReport]) -> list[LayerReport]:
    """Weight layers with finite forward and backward signals, in forward order."""
    return [
        layer for layer in layers
        if layer.kind in WEIGHT_KINDS and _finite(forward_signal(layer), layer.grad.output_rms)
    ]


SEGMENT_JUMP = 8.0
"""A change of elements-per-sample larger than this between consecutive weight layers starts a new
segment. Global pooling (64x32x32 -> 64) or a classifier head (512 -> 10) rescales per-element
signals by design -- a mean over N positions hands each 1/N of the gradient -- so trends are
compared only between layers of similar size (stride-2 stages change it by 2x and stay together)."""


def _per_sample(layer: LayerReport) -> int:
    return math.prod(layer.shape[1:]) if layer.shape and len(layer.shape) > 1 else 1


def segments(path: list[LayerReport]) -> list[list[LayerReport]]:
    out: list[list[LayerReport]] = []
    for layer in path:
        if out:
            a, b = _per_sample(out[-1][-1]), _per_sample(layer)
            if max(a, b) / max(min(a, b), 1) <= SEGMENT_JUMP:
                out[-1].append(layer)
                continue
        out.append([layer])
    return out


def _gain(ratio: float, steps: int) -> float:
    return ratio ** (1.0 / steps) if ratio > 0 and steps > 0 else 0.0


def _where(path: list[LayerReport], reference: LayerReport, extreme: LayerReport, ratio: float) -> str:
    steps = abs(path.index(extreme) - path.index(reference))
    return f"over {steps + 1} weight layers ({_gain(ratio, steps):.3g}x per layer)"


def _extremes(layers: Sequence[LayerReport], t: Thresholds, value, reference_of):  # noqa: ANN001, ANN202
    """Most extreme (ratio, layer, reference, segment) pairs below/above 1 over every long-enough segment."""
    low = high = None
    for segment in segments(depth_path(layers)):
        reference = reference_of(segment)
        if len(segment) < t.min_depth or not value(reference):
            continue
        for layer in segment:
            ratio = value(layer) / value(reference)
            if low is None or ratio < low[0]:
                low = (ratio, layer, reference, segment)
            if high is None or ratio > high[0]:
                high = (ratio, layer, reference, segment)
    return low, high


@dataclass(frozen=True)
class _Trend:
    """One signal's trend rule: which value, measured against which reference, and what to say."""

    signal: Callable[[LayerReport], float | None]
    reference: Callable[[list[LayerReport]], LayerReport]
    vanishing: tuple[str, str, str]  # finding kind, severity, threshold field
    exploding: tuple[str, str, str]
    absolute_max: str  # threshold field for the absolute guard
    absolute: Callable[[LayerReport], float | None]  # the value it guards
    vanishing_text: str
    exploding_text: str
    absolute_text: str


_GRADIENT = _Trend(
    signal=lambda l: l.grad.output_rms,
    reference=lambda segment: segment[-1],  # the loss's scale: nearest the output
    vanishing=("vanishing_gradient", "error", "vanishing_gradient_ratio"),
    exploding=("exploding_gradient", "error", "exploding_gradient_ratio"),
    absolute_max="gradient_abs_max",
    absolute=lambda l: l.grad.output_rms,
    vanishing_text="the backward signal reaching {layer} is {ratio:.2e} of that at {ref} {where}: the layers before it barely learn",
    exploding_text="the backward signal grows {ratio:.2e}x from {ref} back to {layer} {where}: updates there will be huge and unstable",
    absolute_text="the gradient reaching {layer} has RMS {value:.2e}, above the absolute limit",
)
_ACTIVATION = _Trend(
    signal=forward_signal,
    reference=lambda segment: segment[0],  # the data's own scale: nearest the input
    vanishing=("vanishing_activation", "warning", "vanishing_activation_ratio"),
    exploding=("exploding_activation", "error", "exploding_activation_ratio"),
    absolute_max="activation_abs_max",
    absolute=lambda l: l.activation.std if l.activation else None,
    vanishing_text="the input-dependent part of the activations shrinks to {ratio:.2e} of its size at {ref} by {layer} {where}",
    exploding_text="the activations grow {ratio:.2e}x from {ref} to {layer} {where}",
    absolute_text="the output of {layer} has std {value:.2e}, above the absolute limit",
)


def _trend(layers: Sequence[LayerReport], t: Thresholds, spec: _Trend) -> list[Finding]:
    findings: list[Finding] = []
    low, high = _extremes(layers, t, spec.signal, spec.reference)
    for extreme, (kind, severity, field_name), text, beyond in (
        (low, spec.vanishing, spec.vanishing_text, lambda r, limit: r < limit),
        (high, spec.exploding, spec.exploding_text, lambda r, limit: r > limit),
    ):
        limit = getattr(t, field_name)
        if extreme and beyond(extreme[0], limit):
            ratio, layer, ref, segment = extreme
            where = _where(segment, ref, layer, ratio)
            message = text.format(layer=layer.name, ref=ref.name, ratio=ratio, where=where)
            findings.append(_finding(kind, severity, layer.name, ratio, limit, message))
    kind, severity, _ = spec.exploding
    if not any(f.kind == kind for f in findings):
        limit = getattr(t, spec.absolute_max)
        loud = [l for l in layers if (spec.absolute(l) or 0.0) > limit]  # NaN compares False
        if loud:
            worst = max(loud, key=lambda l: spec.absolute(l))  # type: ignore[arg-type, return-value]
            value = spec.absolute(worst)
            findings.append(_finding(kind, severity, worst.name, value, limit,  # type: ignore[arg-type]
                                     spec.absolute_text.format(layer=worst.name, value=value)))
    return findings


def gradient_trend(layers: Sequence[LayerReport], t: Thresholds) -> list[Finding]:
    """Backward signal at each weight layer relative to the one nearest the output of its segment."""
    return _trend(layers, t, _GRADIENT)


def activation_trend(layers: Sequence[LayerReport], t: Thresholds) -> list[Finding]:
    """Forward (input-dependent) signal at each weight layer relative to the first one of its segment."""
    return _trend(layers, t, _ACTIVATION)


def chance_dead(zero_fraction: float | None, dead_ratio: float, samples_per_unit: float) -> float:
    """Expected dead fraction from sampling alone: a live unit silent on all n observations.
    (Rectifiers always have their zeros counted; without a count nothing is blamed on chance.)"""
    if dead_ratio >= 1.0 or zero_fraction is None:
        return 0.0
    p_alive_zero = max(0.0, min(1.0, (zero_fraction - dead_ratio) / (1.0 - dead_ratio)))
    return p_alive_zero**samples_per_unit


def dead_units(layers: Sequence[LayerReport], t: Thresholds) -> list[Finding]:
    findings = []
    for layer in layers:
        a = layer.activation
        if a is None or a.dead_ratio is None or a.dead_ratio <= t.dead_ratio:
            continue
        if a.samples_per_unit is not None and chance_dead(a.zero_fraction, a.dead_ratio, a.samples_per_unit) > t.dead_ratio / 2:
            continue  # too few samples to tell dead from merely quiet; the layer note says so
        severity = "error" if a.dead_ratio >= 1.0 else "warning"
        sparsity = "" if a.zero_fraction is None else f"per-sample sparsity {a.zero_fraction:.0%} is normal; "
        findings.append(_finding(
            "dead_relu", severity, layer.name, a.dead_ratio, t.dead_ratio,
            f"{a.dead_ratio:.0%} of the {a.units} units of {layer.name} never fire on the data "
            f"({sparsity}dead units pass no gradient)",
        ))
    return findings


def saturation(layers: Sequence[LayerReport], t: Thresholds) -> list[Finding]:
    return [
        _finding(
            "saturated_activation", "warning", layer.name, layer.activation.saturation, t.saturation,
            f"{layer.activation.saturation:.0%} of the {layer.kind} outputs of {layer.name} sit at an asymptote, "
            "where the derivative is ~0",
        )
        for layer in layers
        if layer.activation is not None and layer.activation.saturation is not None
        and layer.activation.saturation > t.saturation
    ]


def centring(layers: Sequence[LayerReport], t: Thresholds) -> list[Finding]:
    last_weight = max((i for i, l in enumerate(layers) if l.kind in WEIGHT_KINDS), default=-1)
    findings = []
    for i, layer in enumerate(layers):
        a = layer.activation
        if a is None or layer.kind not in ACTIVATION_KINDS or layer.kind in ("softmax", "log_softmax") or i > last_weight:
            continue
        if _finite(a.centring) and a.centring > t.centring:
            findings.append(_finding(
                "not_zero_centred", "info", layer.name, a.centring, t.centring,
                f"the {layer.kind} outputs of {layer.name} have |mean|/std = {a.centring:.2f}: the next layer's "
                "weight gradients all share one sign per step (zig-zag updates)",
            ))
    return findings


def init_scale(layers: Sequence[LayerReport], t: Thresholds, trend: str | None = None) -> list[Finding]:
    """Gross mismatches always; small ones when the depth trend shows the same direction.

    A 30-layer ReLU MLP with Xavier init is only 1/sqrt(2) off per layer, yet compounds to 3e-5:
    so ``trend`` ("vanishing"/"exploding", from the trend rules) lowers the bar to ``init_tolerance``.
    """
    weighted = [l for l in layers if l.init is not None]
    # With normalisation layers in the network the activation scale is reset at every one of them
    # (GPT-2's deliberate std 0.02 is 4x below Xavier and trains fine), so there an off-scale init
    # is only reported when the measured trend shows it matters.
    normalised_network = any(l.kind in NORM_KINDS for l in layers)
    findings = []
    for layer in weighted[:-1]:  # the output layer's scale is a free choice (often deliberately small)
        advice = layer.init
        assert advice is not None
        if advice.normalized_after or not _finite(advice.ratio) or advice.ratio == 0:
            continue
        gross = not normalised_network and (advice.ratio > t.init_ratio or advice.ratio < 1.0 / t.init_ratio)
        compounding = (trend == "vanishing" and advice.ratio < 1.0 - t.init_tolerance) or (
            trend == "exploding" and advice.ratio > 1.0 + t.init_tolerance
        )
        if gross or compounding:
            why = f" and the signal is {trend} across depth" if compounding and not gross else ""
            findings.append(_finding(
                "init_mismatch", "warning", layer.name, advice.ratio, t.init_ratio if gross else 1.0 + t.init_tolerance,
                f"{layer.name} has weight std {advice.current_std:.3g} ({advice.current_scheme}); "
                f"{advice.scheme} init for the following {advice.activation_after} wants {advice.recommended_std:.3g}{why}",
            ))
    return findings


def _direction(findings: list[Finding]) -> str | None:
    kinds = {f.kind for f in findings}
    if kinds & {"vanishing_gradient", "vanishing_activation"}:
        return "vanishing"
    if kinds & {"exploding_gradient", "exploding_activation"}:
        return "exploding"
    return None


def nonfinite(layers: Sequence[LayerReport], t: Thresholds) -> list[Finding]:
    for layer in layers:
        if layer.activation is not None and layer.activation.nonfinite_units:
            units = layer.activation.nonfinite_units
            return [_finding(
                "nonfinite", "error", layer.name, float(units), 0.0,
                f"{layer.name} is the first layer whose output holds NaN/Inf (in {units} unit{'s' if units > 1 else ''})",
            )]
    for layer in reversed(layers):
        if layer.grad.nonfinite:
            return [_finding(
                "nonfinite", "error", layer.name, 1.0, 0.0,
                f"the backward pass first turns NaN/Inf at {layer.name} (counting from the output)",
            )]
    return []


RULES: dict[str, Rule] = {
    "gradient_trend": gradient_trend,
    "activation_trend": activation_trend,
    "dead_relu": dead_units,
    "saturated_activation": saturation,
    "not_zero_centred": centring,
    "nonfinite": nonfinite,
}


def evaluate(layers: Sequence[LayerReport], thresholds: Thresholds) -> list[Finding]:
    """All findings, ordered by layer position then severity. Init is judged last: it uses the trend."""
    order = {layer.name: layer.index for layer in layers}
    rank = {severity: i for i, severity in enumerate(SEVERITIES)}
    findings = [f for rule in RULES.values() for f in rule(layers, thresholds)]
    findings += init_scale(layers, thresholds, _direction(findings))
    return sorted(findings, key=lambda f: (order.get(f.layer, len(order)), rank[f.severity]))
