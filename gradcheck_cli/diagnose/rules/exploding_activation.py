"""The forward signal grows from the first weight layer of a segment on, or is huge anywhere."""

from __future__ import annotations

from gradcheck_cli.diagnose.rules.depth import Trend, forward_signal, nearest_input, output_std

TREND = Trend(
    "exploding_activation", forward_signal, nearest_input, vanishing=False, limit="exploding_activation_ratio",
    text="the activations grow {ratio:.2e}x from {ref} to {layer} {where}",
    absolute=output_std, absolute_limit="activation_abs_max",
    absolute_text="the output of {layer} has std {value:.2e}, above the absolute limit",
)
find = TREND.find
