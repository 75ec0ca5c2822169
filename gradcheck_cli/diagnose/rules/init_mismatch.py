"""Weight scales far from what the following activation needs: gross mismatches always, small ones
when the measured depth trend shows the same direction.

A 30-layer ReLU MLP with Xavier init is only 1/sqrt(2) off per layer, yet compounds to 3e-5: so a
vanishing (exploding) trend found by the rules evaluated before this one lowers the bar to
``init_tolerance``.
"""

from __future__ import annotations

from collections.abc import Sequence

from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.rules import finding, finite
from gradcheck_cli.layers import NORM_KINDS
from gradcheck_cli.report.model import Finding


def direction(found: Sequence[Finding]) -> str | None:
    """``vanishing`` or ``exploding`` when a depth-trend finding says so (vanishing wins)."""
    kinds = {f.kind for f in found}
    if kinds & {"vanishing_gradient", "vanishing_activation"}:
        return "vanishing"
    if kinds & {"exploding_gradient", "exploding_activation"}:
        return "exploding"
    return None


def find(e: Evidence) -> list[Finding]:
    layers, t = e.layers, e.thresholds
    trend = direction(e.found)
    weighted = [l for l in layers if l.init is not None]
    # With normalisation layers in the network the activation scale is reset at every one of them
    # (GPT-2's deliberate std 0.02 is 4x below Xavier and trains fine), so there an off-scale init
    # is only reported when the measured trend shows it matters.
    normalised_network = any(l.kind in NORM_KINDS for l in layers)
    findings = []
    for layer in weighted[:-1]:  # the output layer's scale is a free choice (often deliberately small)
        advice = layer.init
        assert advice is not None
        if advice.normalized_after or not finite(advice.ratio) or advice.ratio == 0:
            continue
        gross = not normalised_network and (advice.ratio > t.init_ratio or advice.ratio < 1.0 / t.init_ratio)
        compounding = (trend == "vanishing" and advice.ratio < 1.0 - t.init_tolerance) or (
            trend == "exploding" and advice.ratio > 1.0 + t.init_tolerance
        )
        if gross or compounding:
            why = f" and the signal is {trend} across depth" if compounding and not gross else ""
            findings.append(finding(
                "init_mismatch", layer.name, advice.ratio, t.init_ratio if gross else 1.0 + t.init_tolerance,
                f"{layer.name} has weight std {advice.current_std:.3g} ({advice.current_scheme}); "
                f"{advice.scheme} init for the following {advice.activation_after} wants {advice.recommended_std:.3g}{why}",
            ))
    return findings
