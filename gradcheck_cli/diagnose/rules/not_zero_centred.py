"""Activations feeding a weight layer whose mean is large next to their spread (THEORY.md section 3)."""

from __future__ import annotations

from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.rules import finding, finite, shown
from gradcheck_cli.layers import ACTIVATION_KINDS, WEIGHT_KINDS
from gradcheck_cli.report.model import Finding

_DISTRIBUTIONS = ("softmax", "log_softmax")  # outputs that are probabilities by design


def find(e: Evidence) -> list[Finding]:
    layers, t = e.layers, e.thresholds
    last_weight = max((i for i, l in enumerate(layers) if l.kind in WEIGHT_KINDS), default=-1)
    findings = []
    for i, layer in enumerate(layers):
        a = layer.activation
        if a is None or layer.kind not in ACTIVATION_KINDS or layer.kind in _DISTRIBUTIONS or i > last_weight:
            continue
        if finite(a.centring) and a.centring > t.centring:
            findings.append(finding(
                "not_zero_centred", layer.name, a.centring, t.centring,
                f"the {layer.kind} outputs of {shown(layer)} have |mean|/std = {a.centring:.2f}: the next layer's "
                "weight gradients all share one sign per step (zig-zag updates)",
            ))
    return findings
