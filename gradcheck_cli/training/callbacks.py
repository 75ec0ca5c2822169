"""Ready callbacks for PyTorch Lightning and Hugging Face ``Trainer``, each wrapping a :class:`Monitor`::

    from gradcheck_cli.training.callbacks import GradcheckCallback          # Lightning
    trainer = lightning.pytorch.Trainer(callbacks=[GradcheckCallback(every=10, output="grads.json")])

    from gradcheck_cli.training.callbacks import GradcheckTrainerCallback   # transformers
    trainer = transformers.Trainer(..., callbacks=[GradcheckTrainerCallback(every=10, stop_on_failure=True)])

This module is import-light on purpose: importing it (or ``gradcheck_cli``) imports neither library nor
torch. The two classes subclass the libraries' own base classes, so they live in
:mod:`.lightning_callback` and :mod:`.hf_callback` and are resolved on first attribute access; a missing
library is a one-line :class:`~gradcheck_cli.errors.UsageError` naming the extra to install.
:class:`MonitorSession` is what both share: one Monitor per ``fit``, the report file, the cleanup.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradcheck_cli.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    import torch

    from gradcheck_cli.report.model import Report
    from gradcheck_cli.training.hf_callback import GradcheckTrainerCallback
    from gradcheck_cli.training.lightning_callback import GradcheckCallback
    from gradcheck_cli.training.monitor import Monitor

__all__ = ["GradcheckCallback", "GradcheckTrainerCallback", "MonitorSession", "SessionViews"]

_LAZY: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "GradcheckCallback": ("gradcheck_cli.training.lightning_callback", "lightning", ("lightning", "pytorch_lightning")),
    "GradcheckTrainerCallback": ("gradcheck_cli.training.hf_callback", "hf", ("transformers",)),
}
"""Class name -> (its module, the extra that installs its library, the library's top-level names)."""


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, extra, libraries = _LAZY[name]
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in libraries:
            raise  # a broken install of something else: not ours to explain away
        raise UsageError(f"{name} needs {libraries[0]}: pip install 'gradcheck[{extra}]'") from None


class MonitorSession:
    """One training run's :class:`Monitor`, created on the trainer's model when training starts, and its
    end: the report kept (and written to ``output`` atomically), every hook removed however it ended."""

    def __init__(self, every: int, fail_on: str | None, output: str | Path | None, stop_on_failure: bool,
                 monitor_options: dict[str, Any]) -> None:
        if every < 1:  # checked here too, so a bad callback fails where it is built, not when training starts
            raise UsageError(f"every must be at least 1, got {every}")
        self.every = every
        self.fail_on = fail_on
        self.output = Path(output) if output is not None else None
        self.stop_on_failure = stop_on_failure
        self.monitor_options = monitor_options
        self.monitor: Monitor | None = None
        self.report: Report | None = None
        """The finished run's report (set at train end, also after an exception once a step was recorded)."""

    def start(self, model: torch.nn.Module, clip_grad_norm: float | None = None, scaler: Any = None) -> Monitor:
        """``scaler``: the trainer's ``GradScaler`` under fp16 mixed precision (see :class:`Monitor`)."""
        from gradcheck_cli.training.monitor import Monitor

        self.close()  # a second fit with the same callback starts afresh
        self.report = None
        self.monitor = Monitor(model, self.every, fail_on=self.fail_on, clip_grad_norm=clip_grad_norm, scaler=scaler,
                               **self.monitor_options)
        return self.monitor

    @property
    def measuring(self) -> bool:
        return self.monitor is not None and self.monitor.measuring

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, grad_norm: Any = None) -> bool:
        """Record the step; True when the trainer should stop (a failing finding and ``stop_on_failure``)."""
        if self.monitor is None:
            return False
        self.monitor.step(loss, optimizer, grad_norm)
        return self.stop_on_failure and self.monitor.should_stop

    def pause(self) -> None:
        if self.monitor is not None:
            self.monitor.pause()

    def resume(self) -> None:
        if self.monitor is not None:
            self.monitor.resume()

    def finish(self, write: bool = True) -> Report | None:
        """Keep (and write) the report, then remove the hooks, even when building the report fails. ``write``:
        False on all but the first process of a distributed run, so that one process writes ``output``."""
        monitor = self.monitor
        try:
            if monitor is not None and monitor.steps:
                self.report = monitor.report()
                if self.output is not None and write:
                    from gradcheck_cli.cli.io import write_atomic

                    write_atomic(self.output, self.report.to_json())
        finally:
            self.close()
        return self.report

    def abort(self, write: bool = True) -> None:
        """After the trainer raised: keep what was measured if possible, and never mask the trainer's error."""
        try:
            self.finish(write)
        except Exception:  # noqa: BLE001 - the training error is the one to see
            self.close()

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()
        self.monitor = None


class SessionViews:
    """What both callbacks show of their :class:`MonitorSession` (``self.session``)."""

    session: MonitorSession

    @property
    def monitor(self) -> Monitor | None:
        """The running Monitor (None outside training)."""
        return self.session.monitor

    @property
    def report(self) -> Report | None:
        """The last run's report, once training has ended."""
        return self.session.report
