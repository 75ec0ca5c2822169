"""The backward signal at a weight layer is a tiny fraction of that nearest the output of its segment."""

from __future__ import annotations

from collections.abc import Sequence

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.diagnose.rules.depth import backward_signal, below, extremes, nearest_output, trend_finding
from gradcheck_cli.report.model import Finding, LayerReport


def find(layers: Sequence[LayerReport], t: Thresholds, found: Sequence[Finding] = ()) -> list[Finding]:
    low, _ = extremes(layers, t, backward_signal, nearest_output)
    return trend_finding(
        "vanishing_gradient", low, t.vanishing_gradient_ratio, below,
        "the backward signal reaching {layer} is {ratio:.2e} of that at {ref} {where}: the layers before it barely learn",
    )
