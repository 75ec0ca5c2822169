"""Run every registered kind's rule over the evidence, in registry order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field
from typing import Any

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.diagnose.registry import KINDS, SEVERITIES
from gradcheck_cli.records import record, replace
from gradcheck_cli.report.model import Finding, LayerReport, TrainingReport


@record
class Evidence:
    """What a rule reads: the layer rows, the thresholds, the model's main paths and earlier findings."""

    layers: Sequence[LayerReport]
    """Every row, in forward order."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    found: Sequence[Finding] = ()
    """Findings of the kinds evaluated before this one (init_mismatch reads the depth trends)."""
    paths: Sequence[Sequence[LayerReport]] = ()
    """The main paths (measure/topology.py), each in forward order; empty when the graph was not read."""
    training: TrainingReport | None = None
    """``--steps N``: the series over training (the rules over training read it; None: one-shot only)."""
    derived: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    """What several rules derive from ``layers`` and ``paths`` alone (the depth sequences and their
    segments), computed once per report: :func:`evaluate`'s per-kind copies share this dict."""


def evaluate(evidence: Evidence) -> list[Finding]:
    """All findings, ordered by layer position then severity."""
    found: list[Finding] = []
    for kind in KINDS:
        found += kind.rule(replace(evidence, found=tuple(found)))
    order = {layer.name: layer.index for layer in evidence.layers}
    rank = {severity: i for i, severity in enumerate(SEVERITIES)}
    return sorted(found, key=lambda f: (order.get(f.layer, len(order)), rank[f.severity]))
