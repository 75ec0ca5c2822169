"""The backward signal grows from the output side back towards the input, or is huge anywhere."""

from __future__ import annotations

from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.over_training import applied, first_growing_layer, growth
from gradcheck_cli.diagnose.rules import finding, named
from gradcheck_cli.diagnose.rules.depth import Trend, backward_signal, nearest_output
from gradcheck_cli.report.model import Finding

TREND = Trend(
    "exploding_gradient", backward_signal, nearest_output, vanishing=False, limit="exploding_gradient_ratio",
    text="the backward signal grows {ratio:.2e}x from {ref} back to {layer} {where}: updates there will be huge and unstable",
    absolute=backward_signal, absolute_limit="gradient_abs_max",
    absolute_text="the gradient reaching {layer} has RMS {value:.2e}, above the absolute limit",
    time=True,
)


def find(e: Evidence) -> list[Finding]:
    return TREND.find(e) + over_training(e)


def over_training(e: Evidence) -> list[Finding]:
    """The global gradient norm ran away from its healthy baseline during training: when it began, how
    fast it grew, and the layer whose own backward signal grew first."""
    t = e.training
    if t is None:
        return []
    limit = e.thresholds.train_gradient_growth
    grew = growth(t.logged_steps, applied(t.grad_norm, t.clip_grad_norm), limit, t.loss)
    if grew is None:
        return []
    layer = first_growing_layer(t, limit)
    began = f"; the growth began at {named(e.layers, layer)}" if layer else "; no layer's own backward signal grew past it first"
    peak = "overflowed to inf" if grew.peak == float("inf") else f"reached {grew.peak:.3g} ({grew.peak / grew.baseline:.3g}x)"
    return [finding(
        "exploding_gradient", layer or "(model)", grew.peak / grew.baseline, limit,
        f"over training the global gradient norm left its healthy level {grew.baseline:.3g} after step {grew.start} "
        f"and {peak} by step {grew.peak_step}, growing {grew.rate:.3g}x per step{began}",
        hint="lower the learning rate (see the training advice), clip gradients at the recommended max_norm, "
             "or add warm-up",
        step=grew.start,
    )]
