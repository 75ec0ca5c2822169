"""Bounded activations (sigmoid, tanh and their hard variants) whose outputs sit at an asymptote."""

from __future__ import annotations

from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.rules import finding, shown
from gradcheck_cli.report.model import Finding


def find(e: Evidence) -> list[Finding]:
    layers, t = e.layers, e.thresholds
    return [
        finding(
            "saturated_activation", layer.name, layer.activation.saturation, t.saturation,
            f"{layer.activation.saturation:.0%} of the {layer.kind} outputs of {shown(layer)} sit at an asymptote, "
            "where the derivative is ~0",
        )
        for layer in layers
        if layer.activation is not None and layer.activation.saturation is not None
        and layer.activation.saturation > t.saturation
    ]
