"""The input-dependent part of the forward signal fades from the first weight layer of a segment on."""

from __future__ import annotations

from gradcheck_cli.diagnose.rules.depth import Trend, forward_signal, nearest_input

TREND = Trend(
    "vanishing_activation", forward_signal, nearest_input, vanishing=True, limit="vanishing_activation_ratio",
    text="the input-dependent part of the activations shrinks to {ratio:.2e} of its size at {ref} by {layer} {where}",
)
find = TREND.find
