"""Baseline comparison: did this change make gradient flow worse than the committed report?

Two JSON reports are matched layer by layer (by name). What is compared, and why:

- The **backward-signal profile**: each layer's output-gradient RMS divided by the same quantity at
  the output-side reference layer (the last weight layer with a gradient). Dividing cancels the
  loss's overall scale, which a change of head or of output size moves without touching gradient
  flow; what is left is how much the signal shrinks or grows on its way back to the layer. A layer
  *regressed* when that ratio moved away from 1 (towards vanishing or exploding) by more than the
  tolerance factor, and *improved* when it moved towards 1 by more than it.
- The **dead ratio** of rectifier layers: an absolute rise of more than ``dead_tolerance`` regressed.
- **Findings**, keyed by (kind, layer): a new finding whose kind is in the fail set regressed; new
  findings outside it and resolved findings are listed. A finding over training keeps its key when
  only its step moved (a divergence that starts at step 12 instead of 10 is the same divergence).
- **Training** (both reports from ``--steps``): final loss, largest global gradient norm and steps
  completed, side by side. These numbers are shown, not judged: a run that now diverges or stops early
  already regresses through its ``diverging_loss``/``nonfinite`` findings.
- **Refused**: two reports with no layer name in common (two different models) raise
  :class:`~gradcheck_cli.errors.InputError` (exit 2) instead of a meaningless "changed".
- **Noted, never judged**: run settings (seed, loss, batch ...) and the machine (threads, torch, Python,
  CUDA, device) that differ between the two runs.

Both sides are :class:`~gradcheck_cli.report.model.Report` objects; a saved baseline decodes into one
whatever keys later releases of the same schema version added (the schema-version policy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gradcheck_cli.diagnose.registry import fails
from gradcheck_cli.errors import EXIT_FINDINGS, EXIT_OK, InputError
from gradcheck_cli.report.model import Finding, LayerReport, Report, TrainingReport

STATUSES = ("regressed", "changed", "improved", "unchanged")
"""Overall outcome, worst first: ``changed`` means better and worse-but-not-failing moves both happened
(or only findings outside the fail set appeared)."""


@dataclass(frozen=True)
class LayerChange:
    layer: str
    status: str
    """regressed | improved | unchanged | added (only in the current report) | removed (only in the baseline)."""
    baseline_flow: float | None
    """Backward-signal RMS at this layer / at the output-side reference layer, in the baseline."""
    current_flow: float | None
    flow_change: float | None
    """current_flow / baseline_flow."""
    baseline_dead: float | None
    current_dead: float | None
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FindingChange:
    change: str
    """new | resolved"""
    kind: str
    layer: str
    severity: str
    fails: bool
    """A new finding whose kind is in the fail set: it alone makes the comparison fail."""
    message: str
    step: int | None = None
    """For a finding over training: the step it names (in the report it comes from)."""


@dataclass(frozen=True)
class TrainingSide:
    """One report's training run, reduced to what a comparison shows."""

    steps: int
    completed: int
    final_loss: float | None
    """The loss at the last step taken; None when it was NaN/Inf (a saved series keeps no NaN/Inf kind)."""
    max_grad_norm: float | None
    """The largest global gradient norm over the logged steps; inf when one was NaN/Inf."""
    optimizer: str
    lr: float


@dataclass(frozen=True)
class TrainingChange:
    baseline: TrainingSide
    current: TrainingSide
    loss_change: float | None
    """current final loss / baseline final loss (None when either is missing, non-finite or 0)."""
    grad_norm_change: float | None
    """current max grad norm / baseline max grad norm (None when either is non-finite or 0)."""


@dataclass(frozen=True)
class Comparison:
    baseline: str
    current: str
    tolerance: float
    dead_tolerance: float
    fail_on: list[str]
    status: str
    exit_code: int
    verdict: str
    layers: list[LayerChange]
    findings: list[FindingChange]
    notes: list[str] = field(default_factory=list)
    training: TrainingChange | None = None
    """Both reports from ``analyze --steps``: their runs side by side; None otherwise."""

    def to_dict(self) -> dict[str, Any]:
        from gradcheck_cli.report.codec import encode

        return encode(self)

    def to_json(self) -> str:
        from gradcheck_cli.report.codec import to_json

        return to_json(self)


def compare(baseline: Report, current: Report, *, tolerance: float = 2.0, dead_tolerance: float = 0.1,
            fail_on: list[str] | None = None, names: tuple[str, str] = ("baseline", "current")) -> Comparison:
    """Per-layer and per-finding changes from ``baseline`` to ``current``.

    ``tolerance`` is a factor (> 1) on the backward-signal profile; ``fail_on`` defaults to the fail
    set the current report was produced with.
    """
    fail = set(current.run.fail_on if fail_on is None else fail_on)
    old_flow, new_flow = _flows(baseline), _flows(current)
    old_layers = {l.name: l for l in baseline.layers}
    new_layers = {l.name: l for l in current.layers}
    if old_layers and new_layers and not old_layers.keys() & new_layers.keys():
        raise InputError(f"{names[0]} and {names[1]} have no layer name in common, so there is nothing to compare "
                         f"(baseline: {_some(old_layers)}; current: {_some(new_layers)})",
                         hint="compare two reports of the same model, or refresh the baseline with gradcheck analyze -o")
    order = [l.name for l in current.layers] + [n for n in old_layers if n not in new_layers]
    layers = [_layer_change(name, old_layers.get(name), new_layers.get(name), old_flow.get(name), new_flow.get(name),
                            tolerance, dead_tolerance) for name in order]
    findings = _finding_changes(baseline.findings, current.findings, fail)
    status = _status(layers, findings)
    exit_code = EXIT_FINDINGS if status == "regressed" else EXIT_OK
    return Comparison(names[0], names[1], tolerance, dead_tolerance, sorted(fail), status, exit_code,
                      _verdict(status, layers, findings), layers, findings,
                      _notes(baseline, current) + _training_notes(baseline, current),
                      _training_change(baseline.training, current.training))


def _flows(report: Report) -> dict[str, float]:
    """Layer name -> backward-signal RMS relative to the output-side reference layer."""
    rms = {l.name: l.grad.output_rms for l in report.layers if l.observed and _positive(l.grad.output_rms)}
    weights = [l.name for l in report.layers if l.name in rms and l.init is not None]
    reference = (weights or list(rms))[-1:] if rms else []
    if not reference:
        return {}
    base = rms[reference[0]]
    return {name: value / base for name, value in rms.items()}


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _dead(layer: LayerReport | None) -> float | None:
    return layer.activation.dead_ratio if layer is not None and layer.activation is not None else None


def _layer_change(name: str, old: LayerReport | None, new: LayerReport | None, old_flow: float | None, new_flow: float | None,
                  tolerance: float, dead_tolerance: float) -> LayerChange:
    old_dead, new_dead = _dead(old), _dead(new)
    if old is None or new is None:
        return LayerChange(name, "added" if old is None else "removed", old_flow, new_flow, None, old_dead, new_dead)
    worse: list[str] = []
    better: list[str] = []
    change = new_flow / old_flow if old_flow and new_flow else None
    if change is not None:
        # Distance from 1 in decades: how far the signal here is from the output side's level.
        moved = abs(math.log10(new_flow)) - abs(math.log10(old_flow))
        if moved > math.log10(tolerance):
            direction = "vanishing" if new_flow < old_flow else "exploding"
            worse.append(f"backward signal {change:.3g}x the baseline's (towards {direction})")
        elif -moved > math.log10(tolerance):
            better.append(f"backward signal {change:.3g}x the baseline's (towards the output side's level)")
    if old_dead is not None and new_dead is not None:
        if new_dead - old_dead > dead_tolerance:
            worse.append(f"dead units {old_dead:.0%} -> {new_dead:.0%}")
        elif old_dead - new_dead > dead_tolerance:
            better.append(f"dead units {old_dead:.0%} -> {new_dead:.0%}")
    status = "regressed" if worse else ("improved" if better else "unchanged")
    return LayerChange(name, status, old_flow, new_flow, change, old_dead, new_dead, worse + better)


def _finding_changes(old: list[Finding], new: list[Finding], fail: set[str]) -> list[FindingChange]:
    def key(f: Finding) -> tuple[str, str]:
        return f.kind, f.layer

    old_keys, new_keys = {key(f) for f in old}, {key(f) for f in new}
    added = [FindingChange("new", f.kind, f.layer, f.severity, fails(f, fail), f.message, f.step)
             for f in new if key(f) not in old_keys]
    resolved = [FindingChange("resolved", f.kind, f.layer, f.severity, False, f.message, f.step)
                for f in old if key(f) not in new_keys]
    return added + resolved


def _status(layers: list[LayerChange], findings: list[FindingChange]) -> str:
    if any(l.status == "regressed" for l in layers) or any(f.fails for f in findings):
        return "regressed"
    better = any(l.status == "improved" for l in layers) or any(f.change == "resolved" for f in findings)
    worse = any(f.change == "new" for f in findings)
    if worse:
        return "changed"
    return "improved" if better else "unchanged"


def _verdict(status: str, layers: list[LayerChange], findings: list[FindingChange]) -> str:
    regressed = [l.layer for l in layers if l.status == "regressed"]
    improved = [l.layer for l in layers if l.status == "improved"]
    failing = [f for f in findings if f.fails]
    new = [f for f in findings if f.change == "new"]
    resolved = [f for f in findings if f.change == "resolved"]
    parts = []
    if failing:
        parts.append(f"{len(failing)} new finding(s) in the fail set ({', '.join(sorted({f.kind for f in failing}))})")
    if regressed:
        parts.append(f"{len(regressed)} layer(s) regressed past tolerance, first {regressed[0]}")
    if len(new) > len(failing):
        parts.append(f"{len(new) - len(failing)} new finding(s) outside the fail set")
    if improved:
        parts.append(f"{len(improved)} layer(s) improved")
    if resolved:
        parts.append(f"{len(resolved)} finding(s) resolved")
    head = {"regressed": "REGRESSED", "changed": "CHANGED", "improved": "IMPROVED", "unchanged": "UNCHANGED"}[status]
    return f"{head}: " + ("; ".join(parts) if parts else "no layer moved past tolerance and no finding appeared or went")


def _notes(baseline: Report, current: Report) -> list[str]:
    """Differences in how the two runs were made, which can move numbers without any model change."""
    notes = []
    for key in ("loss", "mode", "batch_size", "seed", "device"):
        old, new = getattr(baseline.run, key), getattr(current.run, key)
        if old != new:
            notes.append(f"run setting {key} differs: baseline {old!r}, current {new!r} (numbers may move for that reason alone)")
    return notes + _environment_notes(baseline, current)


ENVIRONMENT = (("threads", "threads"), ("torch_version", "torch"), ("python_version", "python"),
               ("cuda_version", "CUDA"), ("device_name", "device"))
"""Run fields about the machine (field, label): they can move the last digits, never the verdict by themselves."""


def _environment_notes(baseline: Report, current: Report) -> list[str]:
    """One note when the machines differ (only fields both reports recorded: older reports have none)."""
    differ = []
    for key, label in ENVIRONMENT:
        old, new = getattr(baseline.run, key, None), getattr(current.run, key, None)
        if old is not None and new is not None and old != new:
            differ.append(f"{label} {old} -> {new}")
    if not differ:
        return []
    return [f"environment differs ({', '.join(differ)}): numbers can move slightly for that reason alone "
            "(within --tolerance they are unchanged); the difference itself never fails the comparison"]


def _some(layers: dict[str, LayerReport], shown: int = 3) -> str:
    names = list(layers)
    return ", ".join(names[:shown]) + (f", ... ({len(names)} layers)" if len(names) > shown else "")


def _side(t: TrainingReport) -> TrainingSide:
    last = t.loss[-1] if t.loss else None
    norms = [math.inf if v is None or not math.isfinite(v) else v for v in t.grad_norm]
    return TrainingSide(t.steps, t.completed, last if last is not None and math.isfinite(last) else None,
                        max(norms) if norms else None, t.optimizer, t.lr)


def _ratio(new: float | None, old: float | None) -> float | None:
    return new / old if _positive(new) and _positive(old) else None


def _training_change(baseline: TrainingReport | None, current: TrainingReport | None) -> TrainingChange | None:
    if baseline is None or current is None:
        return None
    old, new = _side(baseline), _side(current)
    return TrainingChange(old, new, _ratio(new.final_loss, old.final_loss), _ratio(new.max_grad_norm, old.max_grad_norm))


def _training_notes(baseline: Report, current: Report) -> list[str]:
    """Training compared only when both runs trained; settings that differ move its numbers by themselves."""
    old, new = baseline.training, current.training
    if old is None and new is None:
        return []
    if old is None or new is None:
        which = "current" if old is None else "baseline"
        return [f"only the {which} report has a training run (--steps): training is not compared"]
    return [f"training setting {key} differs: baseline {getattr(old, key)!r}, current {getattr(new, key)!r}"
            for key in ("optimizer", "lr", "weight_decay", "momentum", "clip_grad_norm", "steps", "every")
            if getattr(old, key) != getattr(new, key)]
