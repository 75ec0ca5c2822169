"""What is measured on a logged training step, shared by ``analyze --steps`` and :class:`Monitor`.

A logged step runs under the same instrumentation as a one-shot analysis (a fresh
:class:`~gradcheck_cli.measure.collector.StatsCollector`, so per-layer numbers mean what they mean
in the layer table) and keeps a few floats per layer: backward RMS, |grad W|/|W|, |delta W|/|W|,
dead and saturated fractions, whether the output held NaN/Inf (a
non-finite gradient shows as a non-finite RMS). Weights, gradients and updates are reduced on the
device and cross to the host once per logged step; activations are never kept. Steps in between run bare.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradcheck_cli.layers import WEIGHT_KINDS
from gradcheck_cli.loading.base import LoadedModel
from gradcheck_cli.measure.collector import LayerStats, StatsCollector
from gradcheck_cli.measure.instrument import instrument
from gradcheck_cli.measure.measurements import Measurements
from gradcheck_cli.measure.hot import HotSquares
from gradcheck_cli.measure.params import parameter_measures, sums_of_squares, unit_dims
from gradcheck_cli.measure.topology import analyse as analyse_topology
from gradcheck_cli.training.optim import UpdateMeter


@dataclass(frozen=True)
class LayerPoint:
    kind: str
    grad_rms: float | None
    weight_ratio: float | None
    update_ratio: float | None
    dead: float | None
    saturation: float | None
    nonfinite: bool


@dataclass(frozen=True)
class StepPoint:
    step: int
    grad_norm: float
    """Global gradient norm before clipping."""
    layers: dict[str, LayerPoint]
    """Layer name -> its point, in forward order."""


class StepRecorder:
    """Arms the instrumentation before a logged step's forward pass and reads it after the optimiser step."""

    def __init__(self, loaded: LoadedModel, *, seed: int = 0, functional: bool = True, sample_stats: int | None = None) -> None:
        self.loaded = loaded
        self.seed = seed
        self.functional = functional
        self.sample_stats = sample_stats
        self._stack: ExitStack | None = None
        self._collector: StatsCollector | None = None
        self._hot: HotSquares | None = None
        """The armed step's gradient squares, taken in its backward right after autograd wrote each large
        gradient (the weights are read after the optimiser's step, so not there)."""
        self.forward: Any = loaded.module
        self.first_alive: dict[str, np.ndarray] = {}
        self.last_alive: dict[str, np.ndarray] = {}
        self.params = dict(loaded.module.named_parameters())
        self.initial: Measurements | None = None
        """The first kept step's measurements (see :meth:`disarm`)."""

    @property
    def armed(self) -> bool:
        return self._stack is not None

    def arm(self) -> Any:
        """Instrument the model for the next forward + backward; returns the forward to call."""
        if self._stack is None:
            self._collector = StatsCollector(self.sample_stats, self.seed)
            self._collector.through_time = False
            self._collector.skip_without_grad = True  # an evaluation between steps is not the step's forward
            self._stack = ExitStack()
            self.forward = self._stack.enter_context(instrument(self.loaded, self._collector, functional=self.functional))
            self._hot = HotSquares(self.params, weights=False)
            self._hot.armed = True
            self._stack.callback(self._hot.remove)
        return self.forward

    def unscale(self, factor: float) -> None:
        """The armed step's backward ran at loss scale ``factor`` (mixed precision's ``GradScaler``): its
        gradient rows are divided by it, so they describe the gradients the optimiser steps with."""
        if self._collector is not None:
            self._collector.grad_scale = factor

    def disarm(self, root: Any = None) -> list[LayerStats]:
        """Remove the hooks (always: the caller's ``finally`` calls this) and return what they saw. With the
        loss's graph node ``root`` and no step kept yet, the step's full measurements are kept as
        :attr:`initial` (what a one-shot analysis of it would report)."""
        stack, collector, hot = self._stack, self._collector, self._hot
        self._stack, self._collector, self._hot, self.forward = None, None, None, self.loaded.module
        if stack is None or collector is None:
            return []
        stack.close()
        stats = collector.finalize()
        if root is not None and self.initial is None:
            params = parameter_measures(self.loaded.module, self.params, 1, unit_dims(collector.layers), hot=hot)
            self.initial = Measurements(stats, params, analyse_topology(root, collector.nodes))
        return stats

    def record(self, step: int, meter: UpdateMeter | None, grad_norm: torch.Tensor | float | None = None,
               root: Any = None) -> StepPoint:
        """Read the step just taken (after ``optimizer.step()``, before ``zero_grad``). ``grad_norm``: the
        pre-clipping norm when the caller clipped (else it is computed from the gradients)."""
        hot = self._hot
        stats = self.disarm(root)
        weights = {s.info.name: s.info.params.get("weight") for s in stats if s.info.kind in WEIGHT_KINDS}
        names = [n for n in dict.fromkeys(weights.values()) if n in self.params]
        tensors = [self.params[n].detach() for n in names]
        with_grad = [p for p in self.params.values() if p.grad is not None]
        known = {}
        if hot is not None and hot.grads:  # taken in the backward; a gradient clipped since is read again
            known = {len(names) + j: taken for j, p in enumerate(with_grad) if (taken := hot.grad_squares(p)) is not None}
        values = sums_of_squares(tensors + [p.grad.detach() for p in with_grad], known)
        weight_sq = dict(zip(names, values[: len(names)]))
        grad_of = {id(p): v for p, v in zip(with_grad, values[len(names):])}
        update_sq = self._updates(meter, names)
        total = math.sqrt(sum(values[len(names):])) if grad_norm is None else float(grad_norm)
        layers = {}
        for s in stats:
            weight = weights.get(s.info.name)
            w2 = weight_sq.get(weight) if weight else None
            g2 = grad_of.get(id(self.params[weight])) if weight in self.params else None
            u2 = update_sq.get(weight) if weight else None
            f = s.forward
            layers[s.info.name] = LayerPoint(
                kind=s.info.kind,
                grad_rms=s.grad_rms,
                weight_ratio=math.sqrt(g2 / w2) if g2 is not None and w2 else None,
                update_ratio=math.sqrt(u2 / w2) if u2 is not None and w2 else None,
                dead=f.dead_ratio if f else None,
                saturation=f.saturation if f else None,
                nonfinite=bool(f and f.nonfinite_units),
            )
            if f is not None and f.alive is not None:
                self.last_alive[s.info.name] = f.alive
                self.first_alive.setdefault(s.info.name, f.alive)
        return StepPoint(step, total, layers)

    def _updates(self, meter: UpdateMeter | None, names: list[str]) -> dict[str, float]:
        if meter is None or not names:
            return {}
        squares = meter.squares([self.params[n] for n in names])
        return {n: v for n, v in zip(names, squares) if v is not None}
