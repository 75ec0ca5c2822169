"""A training run's measurements -> the report's training section: per-layer series and advice.

The phases every training rule shares are defined here once: the loss's divergence point, the
gradient norm's healthy baseline and the step where its growth began (README "Training").
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.report.model import LayerSeries, TrainingAdvice, TrainingReport

if TYPE_CHECKING:  # the training loop (and what it imports) only for --steps runs
    from gradcheck_cli.training.loop import TrainingRun

BASELINE_POINTS = 3
"""The healthy baseline is the median of the first logged steps (robust to one noisy step)."""
HEALTHY_BAND = 2.0
"""A logged step is still healthy while its gradient norm is within this factor of the baseline."""
CLIP_FACTOR = 1.0
"""Recommended max_norm = this x the healthy phase's median norm: steps of the typical size pass
(the larger half shrinks to it), while spikes and runaway growth are cut to the typical size. Measured
on a tanh RNN (spectral radius 1.5, T=30, SGD lr 0.1): unclipped it overflows by step 20; clipped at
the median it trains to a loss of 1e-3, and at twice the median it still diverges."""


def applied(norms: list[float], clip: float | None) -> list[float]:
    """The gradient norm the optimiser applied: the measured (pre-clipping) norm, capped by any clipping.
    A spike that clipping absorbs does not explode the training."""
    return norms if clip is None else [min(g, clip) if not math.isnan(g) else g for g in norms]


QUADRATIC_RATE = 10.0
"""The lr bound 2 lr / (1 + rate) is offered only while the growth per step is at most this: faster
growth is the nonlinearity's (overflowing activations), where the quadratic model says nothing."""


@dataclass(frozen=True)
class Growth:
    """The global gradient norm ran away from its healthy baseline."""

    baseline: float
    start: int
    """The last healthy logged step: the growth began after it."""
    peak_step: int
    peak: float
    rate: float
    """Per-step growth factor over the second half of the growth (where the fastest mode dominates)."""


def divergence(losses: list[float], factor: float) -> tuple[int, float] | None:
    """(step, loss) of the first step whose loss is non-finite or above ``factor`` x the step-0 loss."""
    if not losses:
        return None
    start = losses[0]
    for step, value in enumerate(losses):
        if not math.isfinite(value) or (start > 0 and value > factor * start):
            return step, value
    return None


def growth(steps: list[int], norms: list[float], limit: float, losses: list[float] | None = None) -> Growth | None:
    """Where the gradient norm grew past ``limit`` x its healthy baseline while the loss did not fall, if it did.

    The baseline is the median of the first logged steps before the peak (a spike is not its own
    reference). A norm that grows while the loss keeps falling (never 1% above its value where the
    growth began, up to the logged step after the peak) is a network leaving a vanishing start (a
    deep Xavier ReLU stack measured 0.18 -> 2.7 as its loss fell 2.30 -> 1.70), not an explosion;
    the init-time verdicts already speak for it. ``losses``: the loss at every step (None: not judged).
    """
    finite = [(s, g) for s, g in zip(steps, norms) if math.isfinite(g)]
    blew_up = len(finite) < len(norms)
    if len(finite) < (1 if blew_up else 2):
        return None
    peak_at = len(finite) - 1 if blew_up else max(range(len(finite)), key=lambda i: finite[i][1])
    reference = finite[: min(BASELINE_POINTS, peak_at)] if peak_at else finite[:1] if blew_up else []
    if not reference:
        return None  # the largest norm is the first: the model at init (the layer table's), not a growth
    baseline = statistics.median(g for _, g in reference)
    if baseline <= 0 or (not blew_up and finite[peak_at][1] <= limit * baseline):
        return None
    start_at = max((i for i in range(peak_at + 1) if finite[i][1] <= HEALTHY_BAND * baseline), default=None)
    if start_at is None or (start_at >= peak_at and not blew_up):
        return None
    start_step, (last_step, last) = finite[start_at][0], finite[peak_at]
    peak_step = next(s for s, g in zip(steps, norms) if not math.isfinite(g)) if blew_up else last_step
    later = [st for st in steps if st > peak_step]
    if losses and not blew_up and not _rose(losses, start_step, later[0] if later else len(losses) - 1):
        return None
    mid_at = (start_at + peak_at + 1) // 2 if peak_at - start_at >= 2 else start_at
    mid_step, mid = finite[mid_at]
    rate = (last / mid) ** (1 / (last_step - mid_step)) if last_step > mid_step and mid > 0 else math.inf
    return Growth(baseline, start_step, peak_step, math.inf if blew_up else last, rate)


LOSS_RISE = 1.01
"""The loss "rose" during a growth when it exceeded its value at the last healthy step by 1%."""


def _rose(losses: list[float], start: int, until: int) -> bool:
    """The loss went above its value at ``start`` (or non-finite) at some step after it, up to ``until``
    (the logged step after the peak: a spike's damage shows in the steps after it)."""
    if start >= len(losses) or not math.isfinite(losses[start]):
        return True
    reference = losses[start]
    return any(not math.isfinite(v) or v > reference * LOSS_RISE if reference > 0 else v > reference
               for v in losses[start + 1 : until + 1])


def first_growing_layer(report: TrainingReport, limit: float) -> str | None:
    """The layer whose own backward RMS first passed ``limit`` x its baseline (ties: the larger ratio)."""
    best: tuple[int, float, str] | None = None
    for series in report.layers:
        values = [(i, v) for i, v in enumerate(series.grad_rms) if v is not None]
        base = [v for _, v in values[:BASELINE_POINTS] if math.isfinite(v)]
        if not base or statistics.median(base) <= 0:
            continue
        ref = statistics.median(base)
        for i, v in values:
            ratio = v / ref if math.isfinite(v) else math.inf
            if ratio > limit:
                key = (i, -ratio, series.name)
                if best is None or key < best:
                    best = key
                break
    return best[2] if best else None


def training_report(run: TrainingRun, thresholds: Thresholds) -> TrainingReport:
    steps = [p.step for p in run.points]
    norms = [p.grad_norm for p in run.points]
    report = TrainingReport(
        steps=run.steps, completed=run.completed, every=run.every, optimizer=run.optimizer,
        lr=run.lr, weight_decay=run.weight_decay, momentum=run.momentum, clip_grad_norm=run.clip_grad_norm, data=run.data, loss=run.losses, logged_steps=steps, grad_norm=norms,
        layers=_series(run), advice=TrainingAdvice(None, ""), dying=run.dying, dying_after=run.dying_after,
        lr_scan={f"{lr:.6g}": ok for lr, ok in run.scan.items()},
    )
    return _with_advice(report, thresholds, run)


def _series(run: TrainingRun) -> list[LayerSeries]:
    names: dict[str, str] = {}
    for point in run.points:
        for name, layer in point.layers.items():
            names.setdefault(name, layer.kind)
    out = []
    for name, kind in names.items():
        points = [p.layers.get(name) for p in run.points]

        def column(attr: str) -> list[float | None]:
            return [getattr(p, attr) if p is not None else None for p in points]  # noqa: B023 - used at once

        out.append(LayerSeries(name, kind, column("grad_rms"), column("weight_ratio"), column("update_ratio"),
                               column("dead"), column("saturation"), [bool(p and p.nonfinite) for p in points]))
    return out


def _with_advice(report: TrainingReport, t: Thresholds, run: TrainingRun) -> TrainingReport:
    from dataclasses import replace

    grew = growth(report.logged_steps, applied(report.grad_norm, report.clip_grad_norm), t.train_gradient_growth,
                  report.loss)
    diverged = divergence(report.loss, t.divergence)
    healthy = [g for s, g in zip(report.logged_steps, report.grad_norm)
               if math.isfinite(g) and (grew is None or s <= grew.start) and (diverged is None or s < diverged[0])]
    if healthy:
        clip = CLIP_FACTOR * statistics.median(healthy)
        clip_reason = (f"the median global gradient norm over the {len(healthy)} healthy logged "
                       f"step{'s' if len(healthy) > 1 else ''}: typical steps pass, spikes are cut to the typical size")
    else:
        clip, clip_reason = None, "no healthy logged step to derive a threshold from"
    lr_bound = lr_reason = None
    if grew is not None or diverged is not None:
        stable = [lr for lr, ok in run.scan.items() if ok]
        if stable:
            lr_bound, lr_reason = max(stable), f"the largest learning rate that stayed stable in --lr-scan ({len(run.scan)} runs)"
        elif grew is not None and 1 < grew.rate <= QUADRATIC_RATE:
            lr_bound = 2 * report.lr / (1 + grew.rate)
            lr_reason = (f"the gradient grew {grew.rate:.3g}x per step; for gradient descent on a quadratic that is "
                         f"|1 - lr*lambda_max|, so the stability limit 2/lambda_max is 2*lr/(1 + rate) "
                         f"(an estimate for other optimisers: confirm with --lr-scan)")
        elif run.scan:
            lr_reason = f"no learning rate down to {min(run.scan):.3g} stayed stable in --lr-scan"
        elif grew is not None:
            lr_reason = (f"the gradient grew {grew.rate:.3g}x per step, faster than the geometric growth a quadratic "
                         "model can bound: run with --lr-scan to find a stable rate")
    return replace(report, advice=TrainingAdvice(clip, clip_reason, lr_bound, lr_reason))


def stable(run: TrainingRun, t: Thresholds) -> bool:
    """A run neither diverged nor let its gradient norm run away (what ``--lr-scan`` looks for)."""
    steps = [p.step for p in run.points]
    norms = applied([p.grad_norm for p in run.points], run.clip_grad_norm)
    return divergence(run.losses, t.divergence) is None and growth(steps, norms, t.train_gradient_growth,
                                                                      run.losses) is None
