"""Gradient health inside a hand-written training loop: ``Monitor(model).step(loss, optimizer)``.

The same measurements and rules as ``analyze --steps``, on the user's own loop, data and optimiser::

    with Monitor(model, every=10) as monitor:
        for x, y in loader:
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            monitor.step(loss, optimizer)   # after the optimiser's step, before zero_grad
            optimizer.zero_grad()
            if monitor.should_stop:         # a finding in the fail set appeared
                break
    report = monitor.report()               # a Report, as analyze returns (JSON: report.to_json())

With fp16 AMP, pass the GradScaler (``Monitor(model, scaler=scaler)``) and call ``step`` after
``scaler.step(optimizer)`` and ``scaler.update()``: the loss scale is divided out of the gradient rows, and a
logged step the scaler skipped is measured at the next step instead.

The hooks are on the model only during logged steps (armed at the previous ``step`` call, removed at
this one, and always on ``close``). Losses stay on the device between logged steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from gradcheck_cli.analysis.options import AnalyzeOptions, Thresholds, parse_fail_on
from gradcheck_cli.diagnose.registry import fails
from gradcheck_cli.errors import UsageError
from gradcheck_cli.loading import wrap_object
from gradcheck_cli.report.model import Report
from gradcheck_cli.training.loop import TrainingRun, dying_fractions
from gradcheck_cli.training.optim import UpdateMeter, weight_decay_of
from gradcheck_cli.training.recorder import StepRecorder


class Monitor:
    """Watches a training loop; see the module docstring. ``fail_on`` decides :attr:`should_stop` and the
    report's exit code, as ``--fail-on`` does."""

    def __init__(self, model: torch.nn.Module, every: int = 10, *, fail_on: str | frozenset[str] | None = None,
                 thresholds: Thresholds | None = None, functional: bool = True, seed: int = 0,
                 clip_grad_norm: float | None = None, scaler: Any = None) -> None:
        if every < 1:
            raise UsageError(f"every must be at least 1, got {every}")
        self.every = every
        self.clip_grad_norm = clip_grad_norm
        """The ``max_norm`` the loop clips at, if it does (the report states it; pass the pre-clipping norm
        to :meth:`step` so the gradient series is not capped by it)."""
        self.scaler = scaler
        """A mixed-precision loop's ``torch.amp.GradScaler``: its loss scale is divided out of the gradient rows
        (they describe the gradients the optimiser steps with), and a logged step it skipped (inf/NaN in the
        scaled gradients, routine while it calibrates its scale) is measured at the next step instead."""
        self.skipped = 0
        """Logged steps the GradScaler skipped, each measured again at the step after it."""
        self._armed_scale: float | None = None
        fail = parse_fail_on(fail_on) if fail_on is None or isinstance(fail_on, str) else frozenset(fail_on)
        self.options = AnalyzeOptions(fail_on=fail, thresholds=thresholds or Thresholds(), functional=functional, seed=seed)
        self.loaded = wrap_object(model)
        self._recorder = StepRecorder(self.loaded, seed=seed, functional=functional)
        self._meter: UpdateMeter | None = None
        self._optimizer: Any = None
        self._pending: list[torch.Tensor] = []
        self._run: TrainingRun | None = None
        self.steps = 0
        self.should_stop = False
        """A finding in the fail set has appeared (checked at logged steps)."""
        self._paused = False
        self._arm()

    # -- the loop ---------------------------------------------------------------------------------
    @property
    def measuring(self) -> bool:
        """The step in progress is a logged one (its hooks are on): worth computing a pre-clipping norm for."""
        return self._recorder.armed

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
             grad_norm: torch.Tensor | float | None = None) -> None:
        """Record the step just taken: call after ``optimizer.step()`` and before ``zero_grad``. ``grad_norm``:
        the global gradient norm before clipping, when the loop clipped (else it is read from the gradients)."""
        run = self._start(optimizer)
        self._paused = False  # a pause before this step is over; the arming below decides the next one
        self._pending.append(loss.detach().reshape(()).float())
        logged = self._recorder.armed
        arming = (self.steps + 1) % self.every == 0
        scaler = self._scaler_now(optimizer) if logged or arming else None
        skipped = logged and scaler is not None and (scaler[1] is True or (
            self._armed_scale is not None and scaler[0] < self._armed_scale))
        if skipped:  # no step was taken: its gradients were inf/NaN at this loss scale, by the scaler's design
            self._recorder.disarm()
            self.skipped += 1
        elif logged:
            self._check_gradients()
            self._recorder.unscale(self._step_scale(scaler))
            run.points.append(self._recorder.record(self.steps, self._meter, grad_norm, root=loss.grad_fn))
            self._flush()
        self.steps += 1
        if skipped or arming:
            self._meter.armed = True
            self._arm(scaler)
        else:
            self._meter.armed = False
        if logged and not skipped:
            self.should_stop = self._failing()

    def _check_gradients(self) -> None:
        """A logged step with no gradient on any trainable parameter was recorded as a gradient norm of 0 and no
        weight ratios, silently: ``step`` came after ``zero_grad`` (or before ``backward``)."""
        if any(p.grad is not None for p in self._recorder.params.values() if p.requires_grad):
            return
        self._recorder.disarm()
        raise UsageError("Monitor.step found no gradients on the model's parameters: it ran after optimizer.zero_grad() "
                         "(or before loss.backward())",
                         hint="call monitor.step(loss, optimizer) after optimizer.step() and before optimizer.zero_grad()")

    def loss_scale(self) -> float:
        """The loss scale the logged step in progress runs its backward at (1.0 without a GradScaler), for a
        caller that summed gradients in that backward (the HF callback's pre-clipping norm): its scale when the
        step was armed, or now if the scaler was not known then."""
        return self._step_scale(None)

    def _step_scale(self, scaler: tuple[float, bool | None] | None) -> float:
        """The logged step's loss scale. The scale changes only in ``scaler.update()``: before it (``scaler``
        says an update is pending: Lightning's post-step hook runs between ``scaler.step`` and ``update``) it is
        the scale now; after it, the scale the step was armed with."""
        if scaler is not None and scaler[1] is not None:
            return scaler[0]
        if self._armed_scale is not None:
            return self._armed_scale
        return _scale_of(self.scaler) or 1.0

    def _arm(self, scaler: tuple[float, bool | None] | None = None) -> None:
        """Arm the next step, with the scale its backward will run at: the scale now, or, when this step's
        ``scaler.update()`` is still to come and will back off (it found inf/NaN), the scale it will set."""
        if scaler is None:
            scale = _scale_of(self.scaler)
        else:
            scale = scaler[0] * (float(self.scaler.get_backoff_factor()) if scaler[1] else 1.0)
        self._armed_scale = scale
        self._recorder.arm()

    def _scaler_now(self, optimizer: torch.optim.Optimizer) -> tuple[float, bool | None] | None:
        """(the GradScaler's scale now, whether this step found inf/NaN if ``scaler.update()`` is still to come,
        else None), read once a logged or arming step; None without an enabled scaler. A step is skipped when
        the pending check found inf/NaN, or when the scale is below the armed one: the scaler backs off on inf/NaN
        and on nothing else, so after ``update`` that is this step, and before it a skipped step earlier in the
        same logged window (a trainer whose post-step hook a skipped step never reaches)."""
        scale = _scale_of(self.scaler)
        if scale is None:
            return None
        state = getattr(self.scaler, "_per_optimizer_states", {}).get(id(optimizer))
        found = state.get("found_inf_per_device") if isinstance(state, dict) else None
        return scale, (any(float(v) for v in found.values()) if found else None)

    def pause(self) -> None:
        """Take the hooks off between two steps: an evaluation pass there would otherwise be measured as
        part of the next logged step. :meth:`resume` puts them back."""
        self._paused = self._paused or self._recorder.armed
        self._recorder.disarm()

    def resume(self) -> None:
        """Undo :meth:`pause` before the next step's forward (a no-op when the next step is not logged)."""
        if self._paused:
            self._paused = False
            self._arm()

    def _start(self, optimizer: torch.optim.Optimizer) -> TrainingRun:
        if self._run is None:
            self._optimizer = optimizer
            self._meter = UpdateMeter(optimizer)
            group = optimizer.param_groups[0]
            self._run = TrainingRun(0, self.every, type(optimizer).__name__, float(group.get("lr", math.nan)),
                                    weight_decay_of(optimizer), "the training loop's own batches",
                                    momentum=group.get("momentum"), clip_grad_norm=self.clip_grad_norm)
        elif optimizer is not self._optimizer:
            raise UsageError("Monitor.step was given a different optimizer than before", hint="use one Monitor per optimizer")
        return self._run

    def _flush(self) -> None:
        if self._pending and self._run is not None:
            self._run.losses += torch.stack(self._pending).double().cpu().tolist()
            self._pending = []

    def _failing(self) -> bool:
        """Whether a finding in the fail set has appeared, from the kinds that can be judged as they happen
        (diverging_loss, exploding_gradient, nonfinite): a few list scans, not a report per logged step.
        dying_relu and update_ratio are judged over the whole run, in :meth:`report`."""
        from gradcheck_cli.diagnose.over_training import applied, divergence, growth
        from gradcheck_cli.diagnose.rules import finding

        run, t = self._run, self.options.thresholds
        if run is None:
            return False
        found = []
        if divergence(run.losses, t.divergence) is not None:
            found.append("diverging_loss")
        norms = applied([p.grad_norm for p in run.points], run.clip_grad_norm)
        if growth([p.step for p in run.points], norms, t.train_gradient_growth, run.losses) is not None:
            found.append("exploding_gradient")
        last = run.points[-1] if run.points else None
        if any(not math.isfinite(v) for v in run.losses) or (last is not None and (
                not math.isfinite(last.grad_norm) or any(
                    p.nonfinite or (p.grad_rms is not None and not math.isfinite(p.grad_rms)) for p in last.layers.values()))):
            found.append("nonfinite")
        return any(fails(finding(kind, "(model)", 0.0, 0.0, ""), self.options.fail_on) for kind in found)

    # -- results ----------------------------------------------------------------------------------
    def report(self) -> Report:
        """The report so far: the first logged step's layer rows, and the training series and findings."""
        from gradcheck_cli.diagnose.build import build_report

        run, initial = self._run, self._recorder.initial
        if run is None or initial is None:
            raise UsageError("Monitor.report() needs at least one Monitor.step(loss, optimizer) call")
        self._flush()
        run.steps = self.steps
        run.dying = dying_fractions(self._recorder.first_alive, self._recorder.last_alive)
        run.dying_after = run.points[-1].step if run.points else None
        device = str(next(iter(self.loaded.module.parameters())).device)
        notes = []
        if _scale_of(self.scaler) is not None:
            notes.append("mixed precision: each logged step's gradient statistics are divided by its GradScaler loss scale")
        if self.skipped:
            notes.append(f"{self.skipped} logged step(s) skipped by the GradScaler (inf/NaN in the loss-scaled gradients, "
                         "as it does while it calibrates its scale) were measured at the step after instead")
        return build_report(self.loaded, initial, self.options, notes=notes, device=device, loss="(the training loop's)",
                            samples=None, batch_size=None, batches=1, training=run)

    def close(self) -> None:
        """Remove every hook (idempotent)."""
        self._recorder.disarm()
        if self._meter is not None:
            self._meter.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _scale_of(scaler: Any) -> float | None:
    """A GradScaler's current loss scale (None: no scaler, or a disabled one). ``get_scale`` reads it back
    from the device: once per logged step."""
    if scaler is None or not scaler.is_enabled():
        return None
    return float(scaler.get_scale())
