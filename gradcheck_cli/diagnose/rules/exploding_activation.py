"""The forward signal grows from the first weight layer of a segment on, or is huge anywhere."""

from __future__ import annotations

from collections.abc import Sequence

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.diagnose.rules.depth import above, absolute_finding, extremes, forward_signal, nearest_input, trend_finding
from gradcheck_cli.report.model import Finding, LayerReport


def _std(layer: LayerReport) -> float | None:
    return layer.activation.std if layer.activation else None


def find(layers: Sequence[LayerReport], t: Thresholds, found: Sequence[Finding] = ()) -> list[Finding]:
    _, high = extremes(layers, t, forward_signal, nearest_input)
    trend = trend_finding(
        "exploding_activation", high, t.exploding_activation_ratio, above,
        "the activations grow {ratio:.2e}x from {ref} to {layer} {where}",
    )
    return trend or absolute_finding(
        "exploding_activation", layers, _std, t.activation_abs_max,
        "the output of {layer} has std {value:.2e}, above the absolute limit",
    )
