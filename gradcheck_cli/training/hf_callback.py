"""``GradcheckTrainerCallback``: gradient health of a Hugging Face ``Trainer`` run (``pip install 'gradcheck[hf]'``).

Import it from :mod:`gradcheck_cli.training.callbacks`, which imports this module (and transformers)
only when the class is first asked for.

Where it hooks, and why:

* The step is recorded in ``on_optimizer_step``: ``Trainer._inner_training_loop`` calls it right after
  ``optimizer.step()`` and before ``lr_scheduler.step()`` and ``model.zero_grad()``, so the gradients
  are still there and the learning rate is the one the step used. The optimiser it is handed is
  accelerate's wrapper; the torch optimiser inside it is the one measured.
* The loss: a callback is given neither the trainer nor the loss (``training_step`` returns it to the
  loop only, and ``state.log_history`` holds a mean per logging interval). So a forward hook on the
  model keeps the ``loss`` of each training forward (in train mode, with grad enabled: evaluation is
  not counted), read as ``Trainer.compute_loss`` reads it (``outputs["loss"]``, or ``outputs[0]`` of a
  tuple). It still has its graph, which the first logged step's topology needs. Over accumulated
  micro-batches the step's loss is their mean, or their sum when the model normalised each by the
  whole batch's token count (a ``num_items_in_batch`` argument), as the Trainer does. A model that
  returns no loss (a ``compute_loss_func`` or label smoothing computes it in the Trainer) is a
  ``UsageError``: for those, subclass ``Trainer`` and call :class:`Monitor` from ``training_step``.
* The Trainer clips at ``max_grad_norm`` (1.0 by default) before ``on_pre_optimizer_step``, so on a
  logged step the pre-clipping global norm is summed from post-accumulate-grad hooks on the
  parameters (removed at once); otherwise the gradient series would never exceed the clipping norm.
* fp16 mixed precision: the GradScaler accelerate's optimizer wrapper holds goes to the Monitor, which
  divides its loss scale out of the gradient rows (and out of that pre-clipping norm) and measures a step
  the scaler skipped (inf/NaN in the scaled gradients) at the next step instead.
* Evaluation between steps is not measured: the hooks come off in ``on_step_end`` (evaluation runs
  after it) and go back in ``on_step_begin``. Everything is removed in ``on_train_end``. Transformers
  has no exception event: if ``trainer.train()`` raises and you carry on, call :meth:`close`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from gradcheck_cli.errors import UsageError
from gradcheck_cli.training.callbacks import MonitorSession, SessionViews


class GradcheckTrainerCallback(SessionViews, TrainerCallback):
    """Watches ``trainer.train()``: ``every``-th optimiser step logged, the report written to ``output`` (JSON,
    atomically) at train end, ``control.should_training_stop`` set on a finding in ``fail_on`` when
    ``stop_on_failure``. Other keyword arguments go to :class:`Monitor` (``thresholds``, ``functional``, ``seed``)."""

    def __init__(self, every: int = 10, *, fail_on: str | None = "error", output: str | Path | None = None,
                 stop_on_failure: bool = False, **monitor_options: Any) -> None:
        self.session = MonitorSession(every, fail_on, output, stop_on_failure, monitor_options)
        self._losses: list[torch.Tensor] = []
        self._scaled = False
        self._loss_hook: Any = None
        self._clipping = False
        self._grad_hooks: list[Any] = []
        self._squares: dict[int, torch.Tensor] = {}

    # -- Trainer events ------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None,
                       **kwargs: Any) -> None:
        if model is None:
            raise UsageError("GradcheckTrainerCallback was given no model at train start")
        self.close()
        clip = float(args.max_grad_norm) if args.max_grad_norm and args.max_grad_norm > 0 else None
        self._clipping = clip is not None
        # fp16 mixed precision: accelerate's optimizer wrapper holds the GradScaler (it steps and updates it)
        self.session.start(model, clip_grad_norm=clip, scaler=getattr(kwargs.get("optimizer"), "scaler", None))
        self._loss_hook = model.register_forward_hook(self._keep_loss, with_kwargs=True)

    def on_step_begin(self, args: Any, state: Any, control: Any, model: torch.nn.Module | None = None,
                      **kwargs: Any) -> None:
        self.session.resume()
        if self._clipping and self.session.measuring and model is not None:
            self._watch_gradients(model)

    def on_optimizer_step(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        if self.session.monitor is None:
            return
        loss, grad_norm = self._step_loss(), self._pre_clip_norm()
        if grad_norm is not None:  # summed in the backward, before accelerate unscaled the gradients
            grad_norm = grad_norm / self.session.monitor.loss_scale()
        if self.session.step(loss, _torch_optimizer(optimizer), grad_norm):
            control.should_training_stop = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.pause()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._unhook()
        self.session.finish(write=bool(getattr(state, "is_world_process_zero", True)))

    def close(self) -> None:
        """Remove every hook (idempotent); for a ``train()`` that raised, since Trainer has no event for it."""
        self._unhook()
        self.session.close()

    # -- the loss -----------------------------------------------------------------------------------
    def _keep_loss(self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return
        loss = _loss_of(output)
        if loss is not None:
            self._losses.append(loss)
            self._scaled = self._scaled or kwargs.get("num_items_in_batch") is not None

    def _step_loss(self) -> torch.Tensor:
        losses, scaled = self._losses, self._scaled
        self._losses, self._scaled = [], False
        if not losses:
            self.close()
            raise UsageError("GradcheckTrainerCallback saw no loss in the model's output",
                             hint="the Trainer computes it (compute_loss_func or label smoothing): call Monitor from "
                                  "a Trainer subclass's training_step instead")
        if len(losses) == 1:
            return losses[0]
        stacked = torch.stack([x.reshape(()) for x in losses])
        return stacked.sum() if scaled else stacked.mean()

    # -- the pre-clipping norm ----------------------------------------------------------------------
    def _watch_gradients(self, model: torch.nn.Module) -> None:
        self._squares = {}
        for p in model.parameters():
            if p.requires_grad:
                self._grad_hooks.append(p.register_post_accumulate_grad_hook(self._keep_square))

    def _keep_square(self, p: torch.Tensor) -> None:
        if p.grad is not None:  # the last call (after the last micro-batch) sees the whole accumulated gradient
            self._squares[id(p)] = p.grad.detach().float().square().sum()

    def _pre_clip_norm(self) -> torch.Tensor | None:
        squares = list(self._squares.values())
        self._remove_grad_hooks()
        return torch.stack(squares).sum().sqrt() if squares else None

    def _remove_grad_hooks(self) -> None:
        for handle in self._grad_hooks:
            handle.remove()
        self._grad_hooks, self._squares = [], {}

    def _unhook(self) -> None:
        self._remove_grad_hooks()
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        self._losses, self._scaled = [], False


def _loss_of(output: Any) -> torch.Tensor | None:
    """The loss as ``Trainer.compute_loss`` reads it: ``outputs["loss"]`` of a dict (ModelOutput), ``outputs[0]``
    of a tuple; only a scalar that carries a graph counts (a tuple's first item may be logits)."""
    if isinstance(output, dict):
        loss = output.get("loss")
    elif isinstance(output, (tuple, list)) and output:
        loss = output[0]
    else:
        loss = None
    if isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.grad_fn is not None:
        return loss
    return None


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """accelerate's ``AcceleratedOptimizer`` holds the torch optimiser as ``.optimizer``."""
    inner = getattr(optimizer, "optimizer", None)
    return inner if isinstance(inner, torch.optim.Optimizer) else optimizer
