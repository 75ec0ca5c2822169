"""The input-dependent part of the forward signal fades from the first weight layer of a segment on."""

from __future__ import annotations

from collections.abc import Sequence

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.diagnose.rules.depth import below, extremes, forward_signal, nearest_input, trend_finding
from gradcheck_cli.report.model import Finding, LayerReport


def find(layers: Sequence[LayerReport], t: Thresholds, found: Sequence[Finding] = ()) -> list[Finding]:
    low, _ = extremes(layers, t, forward_signal, nearest_input)
    return trend_finding(
        "vanishing_activation", low, t.vanishing_activation_ratio, below,
        "the input-dependent part of the activations shrinks to {ratio:.2e} of its size at {ref} by {layer} {where}",
    )
