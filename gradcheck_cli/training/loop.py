"""``analyze --steps N``: train the model for N optimiser steps and measure every ``every``-th.

The caller's model ends exactly as it began: weights and buffers are copied before the first step
and written back afterwards (also when training fails), gradients and train/eval modes are restored
by the engine, and the global RNG state is forked. Batches are the sample's, in a fixed cycle.
Steps between logged ones run bare: no hooks, no host synchronisation (the losses stay on the device
until the next logged step reads them, which is also where a non-finite loss stops the run).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gradcheck_cli.analysis.options import AnalyzeOptions
from gradcheck_cli.analysis.passes import forward_backward
from gradcheck_cli.analysis.sample import Sample
from gradcheck_cli.loading.base import LoadedModel
from gradcheck_cli.measure.collector import StatsCollector
from gradcheck_cli.measure.instrument import instrument
from gradcheck_cli.training.optim import UpdateMeter, make_optimizer, weight_decay_of
from gradcheck_cli.training.options import TrainOptions
from gradcheck_cli.training.recorder import StepPoint, StepRecorder

SCAN_HALVINGS = 6
"""``--lr-scan`` halves the learning rate up to this many times (down to 1/64 of it)."""


@dataclass
class TrainingRun:
    """What a training run measured (diagnose/over_training.py turns it into the report's section)."""

    steps: int
    every: int
    optimizer: str
    lr: float
    weight_decay: float
    data: str
    momentum: float | None = None
    clip_grad_norm: float | None = None
    losses: list[float] = field(default_factory=list)
    points: list[StepPoint] = field(default_factory=list)
    dying: dict[str, float] = field(default_factory=dict)
    dying_after: int | None = None
    """The step after which ``dying`` was measured (see TrainingReport.dying_after)."""
    scan: dict[float, bool] = field(default_factory=dict)
    """``--lr-scan``: learning rate -> whether a run at it stayed stable (filled by the engine's caller)."""
    notes: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return len(self.losses)


def train(loaded: LoadedModel, batches: list[Sample], loss_name: str, options: AnalyzeOptions, train: TrainOptions,
          random_inputs: bool, progress: Any = None) -> TrainingRun:
    """Train a copy of ``loaded.module`` (see the module docstring); the model is restored afterwards."""
    module = loaded.module
    with _weights_restored(module):
        alive_before = probe_alive(loaded, batches, options)
        result = _train_once(loaded, batches, loss_name, options, train, measure=True, progress=progress)
        result.data = _data_note(batches, random_inputs, loss_name)
        alive_after = probe_alive(loaded, batches, options) if result.completed and math.isfinite(result.losses[-1]) else {}
    result.dying = dying_fractions(alive_before, alive_after)
    result.dying_after = result.completed - 1
    return result


def scan_learning_rates(loaded: LoadedModel, batches: list[Sample], loss_name: str, options: AnalyzeOptions,
                        train: TrainOptions, stable: Any) -> dict[float, bool]:
    """Retrain from the same start at halved learning rates until ``stable(run)`` holds (``--lr-scan``)."""
    results: dict[float, bool] = {}
    lr = train.rate
    for _ in range(SCAN_HALVINGS):
        lr /= 2
        with _weights_restored(loaded.module):
            run = _train_once(loaded, batches, loss_name, options, dataclasses.replace(train, lr=lr), measure=False)
        results[lr] = stable(run)
        if results[lr]:
            break
    return results


def _train_once(loaded: LoadedModel, batches: list[Sample], loss_name: str, options: AnalyzeOptions, train: TrainOptions,
                *, measure: bool, progress: Any = None) -> TrainingRun:
    module = loaded.module
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, train)
    meter = UpdateMeter(optimizer)
    recorder = StepRecorder(loaded, seed=options.seed, functional=options.functional, sample_stats=options.sample_stats)
    result = TrainingRun(train.steps, train.interval, train.optimizer, train.rate, weight_decay_of(optimizer), "",
                         train.momentum if train.optimizer == "sgd" else None, train.clip_grad_norm)
    pending: list[torch.Tensor] = []
    norms: list[torch.Tensor] = []
    torch.manual_seed(options.seed)
    try:
        for step in range(train.steps):
            logged = train.logged(step) if measure else step == train.steps - 1 or step % 10 == 0
            if progress is not None and logged:
                progress.batch(step, train.steps)
            forward = recorder.arm() if logged and measure else module
            optimizer.zero_grad(set_to_none=True)
            k = step % len(batches)
            loss = forward_backward(module, forward, batches[k], loss_name, options.seed + k)
            pending.append(loss.detach())
            norm = None
            if train.clip_grad_norm is not None:
                norm = torch.nn.utils.clip_grad_norm_(params, train.clip_grad_norm)
            elif not measure:
                norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
            if not measure:
                norms.append(norm.detach())
            meter.armed = logged and measure
            optimizer.step()
            if logged and measure:
                result.points.append(recorder.record(step, meter, norm))
            if logged:
                result.losses += torch.stack(pending).double().cpu().tolist()
                pending = []
                if not math.isfinite(result.losses[-1]):
                    result.notes.append(f"training stopped at step {step}: the loss is no longer finite")
                    break
        if pending:
            result.losses += torch.stack(pending).double().cpu().tolist()
        if progress is not None:
            progress.batch(train.steps, train.steps)
    finally:
        recorder.disarm()
        meter.close()
    if not measure:  # a scan run keeps only the global norm of every step, as points without layers
        values = torch.stack(norms).double().cpu().tolist() if norms else []
        result.points = [StepPoint(i, v, {}) for i, v in enumerate(values)]
    return result


def probe_alive(loaded: LoadedModel, batches: list[Sample], options: AnalyzeOptions) -> dict[str, np.ndarray]:
    """Rectifier layer -> which of its units fire on at least one sample of the data (forward only)."""
    collector = StatsCollector(options.sample_stats, options.seed)
    collector.through_time = False
    with torch.no_grad(), instrument(loaded, collector, functional=options.functional) as forward:
        for batch in batches:
            forward(*batch.args, **batch.kwargs)
    return {s.info.name: s.forward.alive for s in collector.finalize() if s.forward is not None and s.forward.alive is not None}


def dying_fractions(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> dict[str, float]:
    """Per rectifier layer: the fraction of its units alive before and dead after."""
    out = {}
    for name, alive in before.items():
        later = after.get(name)
        if later is not None and later.shape == alive.shape and alive.size:
            out[name] = float(np.count_nonzero(alive & ~later)) / alive.size
    return out


def _data_note(batches: list[Sample], random_inputs: bool, loss_name: str) -> str:
    cycle = f"{len(batches)} batch{'es' if len(batches) > 1 else ''} in a fixed cycle"
    source = f"seeded random inputs, {cycle}" if random_inputs else f"the sample's {cycle}"
    if loss_name == "random-target":
        return (f"{source}, regressed onto fixed random targets (MSE): a falling loss shows the optimiser works "
                "on this model, not that it would learn real data")
    return source


@contextmanager
def _weights_restored(module: torch.nn.Module) -> Iterator[None]:
    """Copy every parameter and buffer; write them back on exit, however training ended."""
    state = [(t, t.detach().clone()) for t in (*module.parameters(), *module.buffers())]
    try:
        yield
    finally:
        with torch.no_grad():
            for tensor, value in state:
                tensor.copy_(value)
