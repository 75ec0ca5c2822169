"""The first layer whose output holds NaN/Inf, else the first (from the output) whose gradient does."""

from __future__ import annotations

from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.rules import finding
from gradcheck_cli.report.model import Finding


def find(e: Evidence) -> list[Finding]:
    layers = e.layers
    for layer in layers:
        if layer.activation is not None and layer.activation.nonfinite_units:
            units = layer.activation.nonfinite_units
            return [finding(
                "nonfinite", layer.name, float(units), 0.0,
                f"{layer.name} is the first layer whose output holds NaN/Inf (in {units} unit{'s' if units > 1 else ''})",
            )]
    for layer in reversed(layers):
        if layer.grad.nonfinite:
            return [finding(
                "nonfinite", layer.name, 1.0, 0.0,
                f"the backward pass first turns NaN/Inf at {layer.name} (counting from the output)",
            )]
    return []
