"""The first layer whose output holds NaN/Inf, else the first (from the output) whose gradient does."""

from __future__ import annotations

import math

from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.rules import finding, named, shown
from gradcheck_cli.report.model import Finding, LayerSeries


def find(e: Evidence) -> list[Finding]:
    return _at_step(e) + _over_training(e)


def _over_training(e: Evidence) -> list[Finding]:
    """The first step whose loss, gradient norm or any layer turned NaN/Inf; at the first such logged step,
    the first layer whose output did, else the layer nearest the output whose gradient did (as at one step)."""
    t = e.training
    if t is None:
        return []
    bad_loss = next((s for s, v in enumerate(t.loss) if not math.isfinite(v)), None)
    bad_point = next((i for i, g in enumerate(t.grad_norm) if not math.isfinite(g) or any(
        _output_bad(s, i) or _grad_bad(s, i) for s in t.layers)), None)
    if bad_loss is None and bad_point is None:
        return []
    layer, where, logged = "(loss)", "", None
    if bad_point is not None:
        logged = t.logged_steps[bad_point]
        first = next((s.name for s in t.layers if _output_bad(s, bad_point)), None)
        last = next((s.name for s in reversed(t.layers) if _grad_bad(s, bad_point)), None)
        if first is not None:
            layer, where = first, f"; at logged step {logged} the first layer whose output is NaN/Inf is {named(e.layers, first)}"
        elif last is not None:
            layer, where = last, (f"; at logged step {logged} the backward pass first turns NaN/Inf at {named(e.layers, last)} "
                                  "(counting from the output)")
    step = min(s for s in (bad_loss, logged) if s is not None)
    pinpoint = "" if t.every == 1 or logged == step else " (run with --every 1 to see that very step's layers)"
    return [finding("nonfinite", layer, float(step), 0.0, f"training turns NaN/Inf at step {step}{where}{pinpoint}",
                    step=step)]


def _output_bad(series: LayerSeries, i: int) -> bool:
    return i < len(series.nonfinite) and series.nonfinite[i]


def _grad_bad(series: LayerSeries, i: int) -> bool:
    value = series.grad_rms[i] if i < len(series.grad_rms) else None
    return value is not None and not math.isfinite(value)


def _at_step(e: Evidence) -> list[Finding]:
    layers = e.layers
    for layer in layers:
        if layer.activation is not None and layer.activation.nonfinite_units:
            units = layer.activation.nonfinite_units
            return [finding(
                "nonfinite", layer.name, float(units), 0.0,
                f"{shown(layer)} is the first layer whose output holds NaN/Inf (in {units} unit{'s' if units > 1 else ''})",
            )]
    for layer in reversed(layers):
        if layer.grad.nonfinite:
            return [finding(
                "nonfinite", layer.name, 1.0, 0.0,
                f"the backward pass first turns NaN/Inf at {shown(layer)} (counting from the output)",
            )]
    return []
