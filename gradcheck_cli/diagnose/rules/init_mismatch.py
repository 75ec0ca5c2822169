"""Weight scales far from what the following activation needs: gross mismatches always, small ones
when the measured depth trend shows the same direction.

A 30-layer ReLU MLP with Xavier init is only 1/sqrt(2) off per layer, yet compounds to 3e-5: so a
vanishing (exploding) trend found by the rules evaluated before this one lowers the bar to
``init_tolerance``.
"""

from __future__ import annotations

from collections.abc import Sequence

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.rules import finding, finite, shown
from gradcheck_cli.layers import NORM_KINDS
from gradcheck_cli.report.model import Finding, LayerReport


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
    for layer in weighted[:-1]:
        advice = layer.init
        assert advice is not None
        if advice.normalized_after or not finite(advice.ratio) or advice.ratio == 0:
            continue
        gross = not normalised_network and (advice.ratio > t.init_ratio or advice.ratio < 1.0 / t.init_ratio)
        compounding = (trend == "vanishing" and advice.ratio < 1.0 - t.init_tolerance) or (
            trend == "exploding" and advice.ratio > 1.0 + t.init_tolerance
        )
        chaotic = advice.note is not None and advice.ratio > t.chaos
        if gross or compounding or chaotic:
            why = (f" and the signal is {trend} across depth" if compounding and not gross else
                   f" ({advice.note})" if chaotic and not gross else "")
            limit = t.init_ratio if gross else (1.0 + t.init_tolerance if compounding else t.chaos)
            findings.append(finding(
                "init_mismatch", layer.name, advice.ratio, limit,
                f"{shown(layer)} has weight std {advice.current_std:.3g} ({advice.current_scheme}); "
                f"{advice.scheme} init for the following {advice.activation_after} wants {advice.recommended_std:.3g}{why}",
            ))
    return findings + output_layer(weighted[-1:], t)


OUTPUT_STD = 2.0
"""The output layer is flagged only when its outputs really are large: std above twice unit scale (logits
of std 1 start a classification near chance level; a head 5x too large measures std 4)."""


def output_layer(last: list[LayerReport], t: Thresholds) -> list[Finding]:
    """The output layer is judged on the large side only. Too small is a deliberate, common choice
    (zero-init heads, GPT-2's 0.02, an LM head tied to the embedding): the initial predictions sit near
    uniform, which is what a classification loss expects. Too large by more than ``init_ratio`` puts
    the initial logits at several times unit scale -- checked on the measured outputs, since a model may
    scale the head's input down to match -- so softmax starts near one-hot and the initial loss far
    above chance; the first steps are spent shrinking the head (a warning: measured, such a net
    still learns, from a loss 3.4x the chance level)."""
    if not last or last[0].init is None:
        return []
    layer, advice = last[0], last[0].init
    output_std = layer.activation.std if layer.activation is not None else None
    if advice.normalized_after or not finite(advice.ratio, output_std) or advice.ratio <= t.init_ratio:
        return []
    if output_std <= OUTPUT_STD:  # type: ignore[operator]
        return []  # the input was scaled down to match (T5 scales by d_model^-0.5 before its lm_head)
    return [finding(
        "init_mismatch", layer.name, advice.ratio, t.init_ratio,
        f"the output layer {shown(layer)} has weight std {advice.current_std:.3g}, {advice.ratio:.3g}x what {advice.scheme} "
        f"init wants ({advice.recommended_std:.3g}), and its outputs have std {output_std:.3g}: the initial loss "
        "starts far above chance level",
    )]
