"""Rectifier units that never fire on the data: per unit (channel after a conv) over every sample and position.

Not the ~50% per-sample sparsity of a healthy ReLU: a unit counts as dead only if it is zero for EVERY
observation, and a layer is judged only when it had enough observations to tell dead from merely quiet.
"""

from __future__ import annotations

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.rules import finding, shown
from gradcheck_cli.report.model import ActivationStats, Finding


def chance_dead(zero_fraction: float | None, dead_ratio: float, samples_per_unit: float) -> float:
    """Expected dead fraction from sampling alone: a live unit silent on all n observations.
    (Rectifiers always have their zeros counted; without a count nothing is blamed on chance.)"""
    if dead_ratio >= 1.0 or zero_fraction is None:
        return 0.0
    p_alive_zero = max(0.0, min(1.0, (zero_fraction - dead_ratio) / (1.0 - dead_ratio)))
    return p_alive_zero**samples_per_unit


def too_few_samples(a: ActivationStats, t: Thresholds) -> bool:
    """Too few observations per unit to tell dead from quiet: chance alone would explain half the limit."""
    if a.dead_ratio is None or a.samples_per_unit is None:
        return False
    return chance_dead(a.zero_fraction, a.dead_ratio, a.samples_per_unit) > t.dead_ratio / 2


def find(e: Evidence) -> list[Finding]:
    layers, t = e.layers, e.thresholds
    findings = []
    for layer in layers:
        a = layer.activation
        if a is None or a.dead_ratio is None or a.dead_ratio <= t.dead_ratio or too_few_samples(a, t):
            continue  # (too few samples: the layer's note says so)
        sparsity = "" if a.zero_fraction is None else f"per-sample sparsity {a.zero_fraction:.0%} is normal; "
        findings.append(finding(
            "dead_relu", layer.name, a.dead_ratio, t.dead_ratio,
            f"{a.dead_ratio:.0%} of the {a.units} units of {shown(layer)} never fire on the data "
            f"({sparsity}dead units pass no gradient)",
            severity="error" if a.dead_ratio >= 1.0 else None,
        ))
    return findings
