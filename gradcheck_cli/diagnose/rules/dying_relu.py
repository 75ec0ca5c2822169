"""Over training: rectifier units that fired on the data at step 0 and never fire after the last step.

Measured on the whole data sample (every batch of the cycle, forward only) before the first and after
the last step, so a unit that is merely quiet on one batch is not counted.
"""

from __future__ import annotations

from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.rules import finding, named
from gradcheck_cli.report.model import Finding


def find(e: Evidence) -> list[Finding]:
    t = e.training
    if t is None:
        return []
    limit = e.thresholds.dying
    after = t.dying_after if t.dying_after is not None else t.completed - 1
    return [
        finding("dying_relu", layer, fraction, limit,
                f"{fraction:.0%} of the units of {named(e.layers, layer)} were alive at step 0 and are dead after step {after} "
                f"({t.optimizer}, lr {t.lr:.3g}): once dead, a unit gets no gradient and never recovers",
                severity="error" if fraction >= 0.5 else None, step=after)
        for layer, fraction in t.dying.items() if fraction > limit
    ]
