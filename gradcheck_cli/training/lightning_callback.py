"""``GradcheckCallback``: gradient health of a PyTorch Lightning run (``pip install 'gradcheck[lightning]'``).

Import it from :mod:`gradcheck_cli.training.callbacks`, which imports this module (and Lightning) only
when the class is first asked for. Works with ``lightning.pytorch`` and, where only that is installed,
``pytorch_lightning``.

Where it hooks, and why:

* The step is recorded by a **post-step hook on the optimiser** (``optimizer.register_step_post_hook``),
  not a Lightning hook: it runs right after ``optimizer.step()``, while the gradients are still there
  and before a step-wise LR scheduler changes the rate (the exact update norms read it). Lightning's
  own hooks are later or earlier: ``on_train_batch_end`` runs after the scheduler, and
  ``on_before_zero_grad`` runs inside the *next* step's closure, after that step's forward.
  The post-step hook fires only on real steps, so gradient accumulation needs no special case, and it
  works with manual optimisation. A step that fp16 AMP's GradScaler skips (inf/NaN in the scaled
  gradients) never reaches it: its losses are dropped in the next ``on_before_optimizer_step`` (which
  every step boundary calls), and the Monitor, given the precision plugin's scaler, sees its scale
  backed off and measures the next step instead (it also divides the loss scale out of the gradient rows).
* The loss is the tensor handed to ``backward``, taken in ``on_before_backward`` (it still has its
  graph, which the first logged step's topology needs; the ``outputs`` of ``on_train_batch_end`` are
  detached). Lightning has divided it by ``accumulate_grad_batches``, so the micro-batches' sum is the
  step's mean loss; without accumulation it is exactly what ``training_step`` returned.
* With ``gradient_clip_val`` set, the global norm is taken in ``on_before_optimizer_step``, which
  Lightning calls before it clips, so the gradient series is not capped by the clipping.
* Validation between steps is not measured: the hooks come off in ``on_validation_start`` and go back
  in ``on_validation_end``. They are removed at ``on_train_end`` and in ``on_exception``.

Only the first optimiser (``trainer.optimizers[0]``) is watched. The layers are hooked on the
LightningModule; a ``training_step`` that calls ``self.net(x)`` rather than ``self(x)`` still has its
layer modules measured, but functional activations (``F.relu``) are seen only inside ``self(...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

try:
    from lightning.pytorch import Callback
except ModuleNotFoundError as exc:  # the older standalone package
    if (exc.name or "").split(".")[0] != "lightning":
        raise
    from pytorch_lightning import Callback

from gradcheck_cli.training.callbacks import MonitorSession, SessionViews


class GradcheckCallback(SessionViews, Callback):
    """Watches ``trainer.fit``: ``every``-th optimiser step logged, the report written to ``output`` (JSON,
    atomically) at train end, ``trainer.should_stop`` set on a finding in ``fail_on`` when
    ``stop_on_failure``. Other keyword arguments go to :class:`Monitor` (``thresholds``, ``functional``, ``seed``)."""

    def __init__(self, every: int = 10, *, fail_on: str | None = "error", output: str | Path | None = None,
                 stop_on_failure: bool = False, **monitor_options: Any) -> None:
        super().__init__()
        self.session = MonitorSession(every, fail_on, output, stop_on_failure, monitor_options)
        self._trainer: Any = None
        self._handle: Any = None
        self._losses: list[torch.Tensor] = []
        self._step_losses: list[torch.Tensor] = []
        """The losses of the step at the optimiser now (moved there in ``on_before_optimizer_step``)."""
        self._grad_norm: torch.Tensor | None = None
        self._scaler: Any = None

    # -- Lightning hooks ---------------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: torch.nn.Module) -> None:
        self._trainer = trainer
        self._losses, self._step_losses, self._grad_norm = [], [], None
        if not trainer.optimizers:  # configure_optimizers returned None: Lightning runs without steps
            return
        # "16-mixed" on an accelerator: the precision plugin's GradScaler (None for bf16, or on CPU)
        self._scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
        self.session.start(pl_module, clip_grad_norm=_clip_value(trainer), scaler=self._scaler)
        self._handle = trainer.optimizers[0].register_step_post_hook(self._stepped)

    def on_before_backward(self, trainer: Any, pl_module: torch.nn.Module, loss: torch.Tensor) -> None:
        if self.session.monitor is not None:
            self._losses.append(loss)

    def on_before_optimizer_step(self, trainer: Any, pl_module: torch.nn.Module, optimizer: Any) -> None:
        # this step's losses (every micro-batch of it): a step the GradScaler then skips leaves none behind
        self._step_losses, self._losses = self._losses, []
        if _clip_value(trainer) is not None and self.session.measuring:
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            self._grad_norm = torch.nn.utils.get_total_norm(grads) if grads else None

    def on_validation_start(self, trainer: Any, pl_module: torch.nn.Module) -> None:
        self.session.pause()

    def on_validation_end(self, trainer: Any, pl_module: torch.nn.Module) -> None:
        self.session.resume()

    def on_train_end(self, trainer: Any, pl_module: torch.nn.Module) -> None:
        self._detach()
        self.session.finish(write=bool(getattr(trainer, "is_global_zero", True)))

    def on_exception(self, trainer: Any, pl_module: torch.nn.Module, exception: BaseException) -> None:
        self._detach()
        self.session.abort(write=bool(getattr(trainer, "is_global_zero", True)))

    # -- the optimiser's post-step hook --------------------------------------------------------------
    def _stepped(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        losses, grad_norm = self._step_losses, self._grad_norm
        self._step_losses, self._grad_norm = [], None
        if not losses:  # training_step returned None: Lightning stepped without a loss
            return
        loss = losses[0] if len(losses) == 1 else torch.stack([x.reshape(()) for x in losses]).sum()
        loss = _unscaled(loss, self._scaler)
        if self.session.step(loss, optimizer, grad_norm):
            self._trainer.should_stop = True

    def _detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._losses, self._step_losses, self._grad_norm, self._trainer = [], [], None, None


def _unscaled(loss: torch.Tensor, scaler: Any) -> torch.Tensor:
    """The step's loss as ``training_step`` returned it: under fp16 AMP the precision plugin scales the loss
    before it calls ``on_before_backward``, so the hook sees it times the GradScaler's scale. Divided on the
    device by the scale tensor (no host read), which still holds this step's scale: the post-step hook runs
    inside ``scaler.step``, before ``scaler.update`` changes it."""
    if scaler is None or not scaler.is_enabled():
        return loss
    scale = getattr(scaler, "_scale", None)
    return loss / (scale if isinstance(scale, torch.Tensor) else scaler.get_scale())


def _clip_value(trainer: Any) -> float | None:
    """The norm Lightning clips at (``gradient_clip_val`` with the default "norm" algorithm), else None."""
    value = getattr(trainer, "gradient_clip_val", None)
    algorithm = getattr(trainer, "gradient_clip_algorithm", None) or "norm"
    return float(value) if value and str(getattr(algorithm, "value", algorithm)).lower() == "norm" else None
