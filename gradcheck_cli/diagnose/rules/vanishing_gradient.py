"""The backward signal at a weight layer is a tiny fraction of that nearest the output of its segment."""

from __future__ import annotations

from gradcheck_cli.diagnose.rules.depth import Trend, backward_signal, nearest_output

TREND = Trend(
    "vanishing_gradient", backward_signal, nearest_output, vanishing=True, limit="vanishing_gradient_ratio",
    text="the backward signal reaching {layer} is {ratio:.2e} of that at {ref} {where}: the layers before it barely learn",
    time=True,
)
find = TREND.find
