"""What a training run (``analyze --steps N``) is: the optimiser, its hyper-parameters, how often to measure."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gradcheck_cli.errors import UsageError

OPTIMIZERS = ("sgd", "adam", "adamw")
DEFAULT_LR = {"sgd": 1e-2, "adam": 1e-3, "adamw": 1e-3}
"""torch's own defaults for Adam/AdamW; SGD has none, 0.01 is the usual starting point."""


@dataclass(frozen=True)
class TrainOptions:
    steps: int
    """Optimiser steps to take (on a copy of the model)."""
    every: int | None = None
    """Measure every N-th step (and always the first and the last); None: about 200 logged steps."""
    optimizer: str = "adamw"
    lr: float | None = None
    """None: :data:`DEFAULT_LR` for the optimiser."""
    weight_decay: float | None = None
    """None: the optimiser's own default (AdamW 0.01, the others 0)."""
    momentum: float = 0.0
    """SGD only."""
    clip_grad_norm: float | None = None
    """Clip the global gradient norm to this before each step (``torch.nn.utils.clip_grad_norm_``)."""
    lr_scan: bool = False
    """When the run diverges, retrain at halved learning rates to find the largest stable one."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UsageError(f"--steps must be at least 1, got {self.steps}")
        if self.every is not None and self.every < 1:
            raise UsageError(f"--every must be at least 1, got {self.every}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {self.optimizer!r}", hint=f"use one of: {', '.join(OPTIMIZERS)}")
        for name in ("lr", "weight_decay", "clip_grad_norm"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0 or (value == 0 and name != "weight_decay")):
                raise UsageError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
        if self.momentum and self.optimizer != "sgd":
            raise UsageError("--momentum applies to --optimizer sgd only",
                             hint="Adam/AdamW keep their own moment estimates (betas)")
        if not 0 <= self.momentum < 1:
            raise UsageError(f"--momentum must lie in [0, 1), got {self.momentum}")

    @property
    def rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def interval(self) -> int:
        return self.every if self.every is not None else max(1, self.steps // 200)

    def logged(self, step: int) -> bool:
        """Steps are numbered from 0; the first and the last are always measured."""
        return step % self.interval == 0 or step == self.steps - 1
