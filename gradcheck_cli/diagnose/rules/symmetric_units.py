"""Units of a layer that start identical and cannot become different (THEORY.md section 6, "Symmetry").

Units with the same incoming weights compute the same output for every input. They receive different
gradients only through the layer after them: if its units are identical too, the gradient each unit
of this layer gets is one common signal times a fixed per-unit factor, so every update moves all the
units' weights along one shared direction and the layer never gains more than a rank-2 weight (one
effective unit plus one direction). Constant init (every weight equal), zero init of consecutive
layers, or one row copied to every row all do this without changing any signal's scale, so no depth
rule sees it. The test is exact, on the weights: the spread of the units' incoming weights around
their mean unit is at most ``symmetry`` of the weight's norm.

A lone symmetric layer followed by a random one is not flagged (the random layer breaks the symmetry,
as zero-initialised residual branches rely on), nor is the output layer (its units get different
errors from the loss).
"""

from __future__ import annotations

from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.rules import finding, shown
from gradcheck_cli.report.model import Finding, LayerReport


def _symmetric(layer: LayerReport, limit: float) -> bool:
    spread = layer.init.unit_spread if layer.init is not None else None
    return spread is not None and spread <= limit


def find(e: Evidence) -> list[Finding]:
    weighted = [layer for layer in e.layers if layer.init is not None and layer.init.unit_spread is not None]
    limit = e.thresholds.symmetry
    findings = []
    for layer, after in zip(weighted, weighted[1:]):  # the output layer has no layer after it
        if _symmetric(layer, limit) and _symmetric(after, limit):
            assert layer.init is not None
            units = layer.init.fan_out
            findings.append(finding(
                "symmetric_units", layer.name, layer.init.unit_spread, limit,  # type: ignore[arg-type]
                f"the {units} units of {shown(layer)} have identical incoming weights, and so do the units of "
                f"{shown(after)} after it: they compute the same output and get the same gradient up to a fixed "
                "factor, so training can never make them differ (one effective unit)",
            ))
    return findings
