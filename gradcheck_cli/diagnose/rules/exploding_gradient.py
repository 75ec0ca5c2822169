"""The backward signal grows from the output side back towards the input, or is huge anywhere."""

from __future__ import annotations

from gradcheck_cli.diagnose.rules.depth import Trend, backward_signal, nearest_output

TREND = Trend(
    "exploding_gradient", backward_signal, nearest_output, vanishing=False, limit="exploding_gradient_ratio",
    text="the backward signal grows {ratio:.2e}x from {ref} back to {layer} {where}: updates there will be huge and unstable",
    absolute=backward_signal, absolute_limit="gradient_abs_max",
    absolute_text="the gradient reaching {layer} has RMS {value:.2e}, above the absolute limit",
    time=True,
)
find = TREND.find
