"""Over training: the step the optimiser takes on a weight, relative to the weight, far from ~1e-3.

The ratio |delta W| / |W| per step is a learning rate measured where it acts (it folds in the optimiser,
the gradient scale and the weight scale): around 1e-3 a weight changes by a tenth of itself in ~100 steps.
The rule reads the median over the logged steps (Adam's first steps are larger by design).
"""

from __future__ import annotations

import statistics

from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.rules import finding, named
from gradcheck_cli.report.model import Finding


def find(e: Evidence) -> list[Finding]:
    t = e.training
    if t is None:
        return []
    high, low = e.thresholds.update_ratio_high, e.thresholds.update_ratio_low
    step = t.logged_steps[-1] if t.logged_steps else None
    findings = []
    for series in t.layers:
        values = [v for v in series.update_ratio if v is not None]
        if not values:
            continue
        median = statistics.median(values)
        if median > high:
            threshold, size, verdict = high, "", f"the learning rate {t.lr:.3g} is too high for this layer"
            hint = "lower the learning rate (or this layer's, with a parameter group), or add warm-up"
        elif 0 < median < low:
            threshold, size, verdict = low, "only ", "the layer is effectively frozen"
            hint = "raise the learning rate, or fix the vanishing gradient that reaches this layer"
        else:
            continue
        findings.append(finding(
            "update_ratio", series.name, median, threshold,
            f"each step changes {named(e.layers, series.name)} by {size}{median:.2g} of its norm (median over "
            f"{len(values)} logged steps; ~1e-3 is usual): {verdict}", hint=hint, step=step))
    return findings
