"""What every renderer says about a training run (``analyze --steps N``), decided once.

The rich, Markdown and HTML renderers format the same rows: a header line, a per-step summary (at
most :data:`SUMMARY_ROWS` rows, elided evenly but never losing the first, the last or a step a
finding names), the per-layer table at the first and last logged steps, and the training advice.
Keeping the choices here means the three formats cannot drift apart in what they show.

A saved report keeps no NaN/Inf kind inside its time series (JSON ``null``), but the loss and the
global gradient norm are recorded at every logged step, so ``None`` there can only mean non-finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gradcheck_cli.render.numbers import num, pct
from gradcheck_cli.report.model import Finding, LayerSeries, Report, TrainingReport

SUMMARY_ROWS = 20
"""The per-step summary shows at most this many rows (more only when findings name more steps)."""
NONFINITE = "non-finite"
DIVERGENCE_KINDS = ("diverging_loss", "exploding_gradient")
"""Finding kinds whose step is where a run starts to diverge (marked in tables and plots)."""


def series_num(value: float | None) -> str:
    """A loss or global gradient norm: always recorded, so a missing value was NaN/Inf."""
    return NONFINITE if value is None else num(value)


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def header_line(training: TrainingReport) -> str:
    """Optimiser, its settings, how far it got, how often it was measured, and on what data."""
    t = training
    parts = [f"{t.optimizer}, lr {num(t.lr)}", f"weight decay {num(t.weight_decay)}"]
    if t.momentum:
        parts.append(f"momentum {num(t.momentum)}")
    parts.append(f"clipped at max_norm {num(t.clip_grad_norm)}" if t.clip_grad_norm else "no clipping")
    stopped = " (stopped at a non-finite loss)" if t.completed < t.steps else ""
    parts.append(f"{t.completed}/{t.steps} steps completed{stopped}")
    parts.append(f"every {t.every} step(s) logged ({len(t.logged_steps)} logged)")
    return " · ".join(parts) + f"; data: {t.data}"


# -- the per-step summary ------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRow:
    step: int
    loss: str
    grad_norm: str
    worst: str
    """The layer whose backward RMS grew most relative to step 0 (``name (12.3x)``), or the first
    non-finite layer (``name (non-finite)``); ``-`` where nothing can be said."""
    marks: str
    """Finding kinds that name this step (``diverging_loss, nonfinite``)."""
    bad: bool
    """A non-finite loss, gradient norm or layer at this step (renderers colour the row)."""


@dataclass(frozen=True)
class StepSummary:
    rows: list[StepRow]
    logged: int
    """Logged steps in the run."""
    elided: int
    """Logged steps not shown."""

    def caption(self) -> str:
        """Say what was left out, and how the shown rows were picked."""
        if not self.elided:
            return ""
        return (f"{self.logged - self.elided} of {self.logged} logged steps shown, {self.elided} elided: the first, the last, "
                "the steps findings name, and evenly spaced ones")


def finding_steps(findings: Sequence[Finding]) -> dict[int, list[str]]:
    """Step -> the kinds of the findings that name it (in report order, no repeats)."""
    steps: dict[int, list[str]] = {}
    for f in findings:
        if f.step is not None and f.kind not in steps.setdefault(f.step, []):
            steps[f.step].append(f.kind)
    return steps


def pick_rows(count: int, required: set[int], limit: int = SUMMARY_ROWS) -> list[int]:
    """Indices 0..count-1 to show: all when they fit, else ``required`` plus evenly spaced others,
    ``limit`` in all (more only if ``required`` alone is larger)."""
    if count <= limit:
        return list(range(count))
    keep = set(required) | {0, count - 1}
    budget = max(0, limit - len(keep))
    for j in range(budget):  # evenly spaced between the first and the last, skipping what is kept
        target = round((j + 1) * (count - 1) / (budget + 1))
        keep.add(min((i for i in range(count) if i not in keep), key=lambda i: (abs(i - target), i)))
    return sorted(keep)


def worst_layer(layers: Sequence[LayerSeries], at: int) -> tuple[str, bool]:
    """(text, non-finite?) for logged position ``at``: the first non-finite layer in forward order,
    else the largest backward RMS relative to its own step-0 value."""
    for layer in layers:
        rms = layer.grad_rms[at] if at < len(layer.grad_rms) else None
        if (at < len(layer.nonfinite) and layer.nonfinite[at]) or (rms is not None and not math.isfinite(rms)):
            return f"{layer.name} ({NONFINITE})", True
    if at == 0:
        return "- (reference step)", False
    growth = [(layer.grad_rms[at] / layer.grad_rms[0], layer.name) for layer in layers
              if at < len(layer.grad_rms) and finite(layer.grad_rms[at]) and finite(layer.grad_rms[0])
              and layer.grad_rms[0] > 0]  # type: ignore[operator]
    if not growth:
        return "-", False
    ratio, name = max(growth)
    return f"{name} ({num(ratio)}x)", False


def step_summary(report: Report, limit: int = SUMMARY_ROWS) -> StepSummary:
    """The rows of the per-step table: logged steps (elided to ``limit``) plus any step a finding
    names that was not logged (its loss is known; the rest was not measured)."""
    t = report.training
    assert t is not None
    named = finding_steps(report.findings)
    position = {step: i for i, step in enumerate(t.logged_steps)}
    shown = pick_rows(len(t.logged_steps), {position[s] for s in named if s in position}, limit)
    rows = [_logged_row(t, i, named) for i in shown]
    rows += [_unlogged_row(t, s, named) for s in named if s not in position and s < len(t.loss)]
    return StepSummary(sorted(rows, key=lambda r: r.step), len(t.logged_steps), len(t.logged_steps) - len(shown))


def _logged_row(t: TrainingReport, at: int, named: dict[int, list[str]]) -> StepRow:
    step = t.logged_steps[at]
    loss = t.loss[step] if step < len(t.loss) else None
    norm = t.grad_norm[at] if at < len(t.grad_norm) else None
    worst, layer_bad = worst_layer(t.layers, at)
    return StepRow(step, series_num(loss), series_num(norm), worst, ", ".join(named.get(step, [])),
                   layer_bad or not finite(loss) or not finite(norm))


def _unlogged_row(t: TrainingReport, step: int, named: dict[int, list[str]]) -> StepRow:
    loss = t.loss[step]
    return StepRow(step, series_num(loss), "not logged", "-", ", ".join(named[step]), not finite(loss))


# -- the per-layer table at the first and last logged steps ---------------------------------------


@dataclass(frozen=True)
class Metric:
    title: str
    values: Callable[[LayerSeries], Sequence[float | None]]
    fmt: Callable[[float | None], str]


METRICS = (
    Metric("grad rms", lambda l: l.grad_rms, num),
    Metric("|dW|/|W|", lambda l: l.weight_ratio, num),
    Metric("|ΔW|/|W|", lambda l: l.update_ratio, num),
    Metric("dead", lambda l: l.dead, pct),
    Metric("sat", lambda l: l.saturation, pct),
)
"""Per-layer quantities shown at the first and last logged steps (grad rms always; the others only
when some layer has a value at either step)."""


@dataclass(frozen=True)
class Cell:
    text: str
    bad: bool = False
    """Non-finite at that step (renderers colour it)."""


@dataclass(frozen=True)
class LayerTable:
    headers: list[str]
    """``layer``, ``kind``, then ``<metric> @<step>`` pairs, then ``dying`` when measured."""
    rows: list[list[Cell]]


def _at(values: Sequence[float | None], i: int) -> float | None:
    return values[i] if i < len(values) else None


def _cell(metric: Metric, layer: LayerSeries, i: int) -> Cell:
    """A value, marked when non-finite; a layer whose output was NaN/Inf shows it in its grad rms
    (a saved report keeps no value there)."""
    value = _at(metric.values(layer), i)
    if value is not None:
        return Cell(metric.fmt(value), not math.isfinite(value))
    if metric.title == "grad rms" and _at(layer.nonfinite, i):
        return Cell(NONFINITE, True)
    return Cell("-")


def layer_table(training: TrainingReport) -> LayerTable:
    """Every layer's metrics at the first and the last logged step, side by side."""
    t = training
    ends = [0, len(t.logged_steps) - 1] if len(t.logged_steps) > 1 else [0]
    metrics = [m for m in METRICS if m.title == "grad rms"
               or any(_at(m.values(l), i) is not None for l in t.layers for i in ends)]
    headers = ["layer", "kind"] + [f"{m.title} @{t.logged_steps[i]}" for m in metrics for i in ends]
    rows = []
    for layer in t.layers:
        cells = [Cell(layer.name), Cell(layer.kind)]
        for m in metrics:
            cells += [_cell(m, layer, i) for i in ends]
        if t.dying:
            cells.append(Cell(pct(t.dying.get(layer.name))))
        rows.append(cells)
    if t.dying:
        headers.append("dying")
    return LayerTable(headers, rows)


DYING_NOTE = "dying: fraction of the layer's units alive at step 0 and dead after the last step"


# -- advice ---------------------------------------------------------------------------------------


def advice_lines(training: TrainingReport) -> list[tuple[str, str]]:
    """(label, text) pairs: the clipping threshold, the learning-rate bound, the lr-scan results."""
    a = training.advice
    clip = (f"clip_grad_norm_(model.parameters(), max_norm={num(a.clip_grad_norm)}): {a.clip_reason}"
            if a.clip_grad_norm is not None else f"no threshold: {a.clip_reason}")
    lines = [("gradient clipping", clip)]
    if a.lr_bound is not None:
        lines.append(("learning rate", f"below {num(a.lr_bound)}" + (f": {a.lr_reason}" if a.lr_reason else "")))
    if training.lr_scan:
        scan = ", ".join(f"lr {lr} {'stable' if ok else 'diverged'}" for lr, ok in training.lr_scan.items())
        lines.append(("lr scan", scan))
    return lines


def step_note(finding: Finding) -> str:
    """`` at step N`` for a finding over training, else nothing (used by every findings list)."""
    return "" if finding.step is None else f" at step {finding.step}"
