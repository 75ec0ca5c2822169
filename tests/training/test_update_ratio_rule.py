"""update_ratio on synthetic series: too large, frozen, and the usual band left alone."""

from __future__ import annotations

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.rules.update_ratio import find
from gradcheck_cli.report.model import LayerSeries, TrainingAdvice, TrainingReport


def _training(ratios: dict[str, list[float | None]]) -> TrainingReport:
    layers = [LayerSeries(name, "linear", [1.0] * 3, update_ratio=values) for name, values in ratios.items()]
    return TrainingReport(steps=30, completed=30, every=10, optimizer="adamw", lr=0.5, weight_decay=0.0, momentum=None,
                          clip_grad_norm=None, data="", loss=[1.0] * 30, logged_steps=[0, 10, 29], grad_norm=[1.0] * 3,
                          layers=layers, advice=TrainingAdvice(None, ""))


def test_large_and_frozen_layers_are_found_at_their_median_and_the_usual_band_is_not() -> None:
    found = find(Evidence([], Thresholds(), training=_training({
        "big": [0.5, 0.2, 0.01],       # median 0.2 > 0.1
        "frozen": [1e-7, 2e-7, None],  # median 1.5e-7 < 1e-6
        "usual": [1e-3, 2e-3, 5e-4],
        "still": [0.0, 0.0, 0.0],      # no step at all (dead or untrained): not this rule's
    })))
    assert [(f.layer, f.value, f.threshold, f.step) for f in found] == [("big", 0.2, 0.1, 29), ("frozen", 1.5e-7, 1e-6, 29)]
    assert "too high" in found[0].message and "effectively frozen" in found[1].message
    assert "by only 1.5e-07" in found[1].message
