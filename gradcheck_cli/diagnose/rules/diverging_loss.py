"""Over training: the loss grows past its starting value by a factor, or stops being finite."""

from __future__ import annotations

import math

from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.over_training import divergence
from gradcheck_cli.diagnose.rules import finding
from gradcheck_cli.report.model import Finding


def find(e: Evidence) -> list[Finding]:
    t = e.training
    if t is None:
        return []
    found = divergence(t.loss, e.thresholds.divergence)
    if found is None:
        return []
    step, value = found
    if math.isfinite(value):
        what = f"the loss grew from {t.loss[0]:.4g} at step 0 to {value:.4g} at step {step} (more than {e.thresholds.divergence:g}x)"
    else:
        what = f"the loss became {value} at step {step} (from {t.loss[0]:.4g} at step 0)"
    advice = f"; stable below lr {t.advice.lr_bound:.3g}" if t.advice.lr_bound else ""
    return [finding("diverging_loss", "(loss)", value if math.isfinite(value) else math.inf, e.thresholds.divergence,
                    f"training diverges: {what} with {t.optimizer} at lr {t.lr:.3g}{advice}", step=step)]
