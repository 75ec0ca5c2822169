"""Run every registered kind's rule over the layer rows, in registry order."""

from __future__ import annotations

from collections.abc import Sequence

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.diagnose.registry import KINDS, SEVERITIES
from gradcheck_cli.report.model import Finding, LayerReport


def evaluate(layers: Sequence[LayerReport], thresholds: Thresholds) -> list[Finding]:
    """All findings, ordered by layer position then severity. Each rule sees the findings of the kinds
    evaluated before it (init_mismatch, last, reads the depth trends)."""
    found: list[Finding] = []
    for kind in KINDS:
        found += kind.rule(layers, thresholds, tuple(found))
    order = {layer.name: layer.index for layer in layers}
    rank = {severity: i for i, severity in enumerate(SEVERITIES)}
    return sorted(found, key=lambda f: (order.get(f.layer, len(order)), rank[f.severity]))
