"""The backward signal grows from the output side back towards the input, or is huge anywhere."""

from __future__ import annotations

from collections.abc import Sequence

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.diagnose.rules.depth import (
    above,
    absolute_finding,
    backward_signal,
    extremes,
    nearest_output,
    trend_finding,
)
from gradcheck_cli.report.model import Finding, LayerReport


def find(layers: Sequence[LayerReport], t: Thresholds, found: Sequence[Finding] = ()) -> list[Finding]:
    _, high = extremes(layers, t, backward_signal, nearest_output)
    trend = trend_finding(
        "exploding_gradient", high, t.exploding_gradient_ratio, above,
        "the backward signal grows {ratio:.2e}x from {ref} back to {layer} {where}: updates there will be huge and unstable",
    )
    return trend or absolute_finding(
        "exploding_gradient", layers, backward_signal, t.gradient_abs_max,
        "the gradient reaching {layer} has RMS {value:.2e}, above the absolute limit",
    )
