"""Streaming per-layer statistics, computed on the tensor's device and never retained.

The hot path (:meth:`StatsCollector.observe` and the gradient hook it installs) launches two to
four read-only reductions per activation (per-unit moments, min/max, and after an activation
function the nonzero count; on an accelerator each is one kernel) and one per gradient, and keeps
only their small results as device tensors: no copy of the activation, no host synchronisation on
an accelerator. On CPU, where a scalar result is already in host memory, two checks read one to
skip work: the uncentred shortcut's precision test and the gradient's finiteness sentinel. The kernels themselves live in
:mod:`gradcheck_cli.measure.reductions`; this module decides what to observe and merges the results.
Everything derived from them -- means, variances, dead units, NaN/Inf units -- is computed once
in :meth:`StatsCollector.finalize`, vectorised with numpy after one transfer per table, and
batches merge with Chan's parallel variance formula (:mod:`gradcheck_cli.measure.merging` holds the
merges), so statistics over several batches equal those over their concatenation.
"""

from __future__ import annotations

import math
from dataclasses import field
from typing import Any, NamedTuple

import numpy as np
import torch

from gradcheck_cli.layers import DENSE_KINDS, RECTIFIER_KINDS, LayerInfo, Saturation, saturation_for
from gradcheck_cli.measure.merging import host, merge_rows, single_rows, union, zero_fraction
from gradcheck_cli.measure.reductions import HALF, GradientMoments, ScratchPool, forward_row, gradient_moments
from gradcheck_cli.records import record

# Kinds whose output is laid out channel-first (N, C, ...): a rectifier after them has channel units.
_CHANNEL_FIRST = frozenset({"conv", "conv_transpose", "batchnorm", "groupnorm", "instancenorm", "pool"})
_FEATURE_LAST = frozenset({"linear", "layernorm", "rmsnorm", "embedding", "attention", "rnn"})


@record
class ForwardSummary:
    count: int
    mean: float
    std: float
    signal_std: float | None
    min: float
    max: float
    zero_fraction: float | None
    nonfinite_units: int
    saturation: float | None
    dead_ratio: float | None
    units: int | None
    samples_per_unit: float | None
    alive: np.ndarray | None = field(default=None, compare=False, repr=False)
    """Rectifier layers: which units fired at least once (what training's dying-unit rule compares)."""


@record
class LayerStats:
    """Everything measured for one layer, merged over all batches and calls."""

    info: LayerInfo
    forward: ForwardSummary | None
    grad_rms: float | None
    grad_count: int
    grad_nonfinite: int
    time: list[float] | None = None
    """A recurrent layer's backward signal per time step (measure/through_time.py)."""


class _Observation(NamedTuple):  # a tuple: built once a layer per call, on the hot path
    index: int
    numel: int
    row: list[torch.Tensor | None]


class StatsCollector:
    """Receives layer outputs during forward, output gradients during backward; summarises at the end."""

    def __init__(self, sample_units: int | None = None, seed: int = 0) -> None:
        self.layers: list[LayerInfo] = []
        self._observations: list[_Observation] = []
        self._grads: list[tuple[int, int, GradientMoments]] = []  # layer index, numel, moments
        self._channel_first = False
        self._sample_units = sample_units
        self._samples: dict[tuple[int, int, torch.device], torch.Tensor] = {}
        self._scratch = ScratchPool()
        self._plans: dict[int, tuple[bool | None, Saturation | None, bool]] = {}
        self.nodes: dict[int, Any] = {}
        """Row index -> the autograd node of its first output (the graph's skeleton, for the topology)."""
        self.root: Any = None
        """The first batch's loss node (set by the engine before its backward pass)."""
        self._time: dict[int, torch.Tensor | None] = {}
        self.seed = seed
        """Seeds the unit sample of --sample-stats and the through-time probes."""
        self.reducer: Any = None
        """A distributed run's :class:`~gradcheck_cli.measure.distributed.Reducer`: every rank's share of each
        observation is merged into one before the per-layer merge (None: one process)."""
        self.through_time = True
        """Probe recurrent layers through time (off on training steps: the one-shot analysis has the profile)."""
        self.skip_without_grad = False
        """Leave out calls of the model made with gradients off (a training loop's evaluation between steps,
        under ``no_grad`` or ``inference_mode``): set for training steps, whose forward always records a graph.
        Only the model's outermost call is asked: a reentrant checkpoint's no-grad segments inside a training
        forward are still observed."""
        self.grad_scale = 1.0
        """The factor the backward's gradients carry: a mixed-precision training step's loss scale (its
        ``GradScaler``'s), divided out of the gradient statistics in :meth:`finalize`."""
        self.hot: Any = None
        """The run's :class:`~gradcheck_cli.measure.params.HotSquares`, if any: the module front end hands it
        each layer's large weights right after the layer's forward read them."""

    def add_layer(self, name: str, kind: str, type_name: str, **extra: Any) -> LayerInfo:
        info = LayerInfo(index=len(self.layers), name=name, kind=kind, type_name=type_name, **extra)
        self.layers.append(info)
        return info

    # -- hot path -------------------------------------------------------------------------------
    def observe(self, info: LayerInfo, output: torch.Tensor) -> None:
        """Record forward statistics of a layer output and hook its gradient. Never synchronises.

        Written for the hot path: in situ every torch call, attribute read and tuple costs about three
        times what it does in a loop (the model's kernels evict the interpreter's working set between
        layers), so each tensor property is read once, the row's decisions come from :meth:`_plan`, and
        the reductions run with grad mode off instead of on a detached copy."""
        layout, saturation, count_zeros = self._plan(info)
        if layout is not None:
            self._channel_first = layout
        numel = output.numel()
        if not numel or not output.is_floating_point():
            return
        if info.shape is None:
            info.shape = tuple(output.shape)
        dims = output.dim()
        unit_dim = None if dims == 0 else (1 if self._channel_first and dims >= 3 else dims - 1)
        index = info.index
        grad_mode = torch.is_grad_enabled()
        torch._C._set_grad_enabled(False)  # the reductions record nothing
        try:
            x = output
            if self._sample_units and unit_dim is not None and x.shape[unit_dim] > self._sample_units:
                x = x.index_select(unit_dim, self._unit_sample(index, x.shape[unit_dim], x.device))
            if x.dtype in HALF:
                x = x.float()
            # the pooled buffer only where an elementwise temporary is certain (a count, a saturation
            # test): looking it up costs a few us in situ, and a dense layer's moments write nothing
            scratch = self._scratch.get(x) if count_zeros or saturation is not None else None
            row = forward_row(x, saturation, unit_dim, scratch, count_zeros=count_zeros)
        finally:
            torch._C._set_grad_enabled(grad_mode)
        self._observations.append(_Observation(index, x.numel() if x is not output else numel, row))
        if output.requires_grad:
            node = output.grad_fn
            if node is not None and index not in self.nodes:
                self.nodes[index] = node
            self._hook_gradient(output, index, node, numel)

    def observe_gradient(self, info: LayerInfo, output: torch.Tensor) -> None:
        """Only the gradient reaching ``output``: a layer output recomputed inside the backward (reentrant
        activation checkpointing), whose forward statistics were taken when it first ran."""
        if output.is_floating_point() and output.numel():
            self._hook_gradient(output, info.index, output.grad_fn, output.numel())

    def _plan(self, info: LayerInfo) -> tuple[bool | None, Saturation | None, bool]:
        """What a row's kind decides, once a row: the layout it sets for the rectifiers after it (True:
        channel-first, False: feature-last, None: unchanged), its saturation bounds, whether zeros are counted."""
        plan = self._plans.get(info.index)
        if plan is None:
            kind = info.kind
            layout = True if kind in _CHANNEL_FIRST else False if kind in _FEATURE_LAST else None
            plan = self._plans[info.index] = (layout, saturation_for(kind, info.attrs), kind not in DENSE_KINDS)
        return plan

    def _unit_sample(self, index: int, units: int, device: torch.device) -> torch.Tensor:
        """``--sample-stats K``: the same K units of a layer on every call and batch, seeded per layer,
        so a unit's dead/alive verdict still rests on every sample it saw."""
        key = (index, units, device)
        if key not in self._samples:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            chosen = torch.randperm(units, generator=generator)[: self._sample_units].sort().values
            self._samples[key] = chosen.to(device)
        return self._samples[key]

    def _hook_gradient(self, output: torch.Tensor, index: int, node: Any, numel: int) -> None:
        """Measure the gradient reaching ``output`` during backward.

        The hook goes on the autograd node that made the tensor, as a pre-hook reading the
        tensor's slot: it sees the same gradient as ``Tensor.register_hook`` (the sum over all
        consumers, and the pre-modification value if the tensor is later changed in place), but
        skips the Python-side bookkeeping of a tensor hook, which is several microseconds per
        layer per call. A leaf (no node) takes the tensor hook.
        """
        slot, grads = output.output_nr, self._grads

        if node is None:
            output.register_hook(lambda grad: grads.append((index, numel, gradient_moments(grad.detach()))))
            return

        def pre_hook(grad_outputs: tuple[torch.Tensor | None, ...]) -> None:  # one frame a layer, not two
            grad = grad_outputs[slot]
            if grad is not None:
                grads.append((index, numel, gradient_moments(grad)))

        node.register_prehook(pre_hook)

    def wants_time(self, info: LayerInfo) -> bool:
        """Whether this recurrent row still needs its through-time profile (measured once, first call)."""
        return self.through_time and info.index not in self._time

    def observe_time(self, info: LayerInfo, profile: torch.Tensor | None) -> None:
        """Keep a recurrent layer's per-step backward profile (a device tensor; moved in finalize)."""
        self._time[info.index] = profile

    # -- end of run -------------------------------------------------------------------------------
    def finalize(self) -> list[LayerStats]:
        """Merge every batch and call per layer; the only place that moves data to the host."""
        if self.reducer is not None:
            self.reducer.check([o.row[0].numel() for o in self._observations], len(self._grads))
        forwards = self._merge_forward()
        grads = self._merge_grads()
        times = self._merge_time()
        result = []
        for info in self.layers:
            g = grads.get(info.index)
            result.append(
                LayerStats(
                    info=info,
                    forward=forwards.get(info.index),
                    grad_rms=None if g is None else g[0],
                    grad_count=0 if g is None else g[1],
                    grad_nonfinite=0 if g is None else g[2],
                    time=times.get(info.index),
                )
            )
        return result

    def _merge_time(self) -> dict[int, list[float]]:
        """Row index -> per-step profile, all profiles in one transfer."""
        kept = [(index, t) for index, t in self._time.items() if t is not None]
        if not kept:
            return {}
        values = host(torch.cat([t for _, t in kept])).tolist()
        out, start = {}, 0
        for index, t in kept:
            out[index] = values[start : start + t.numel()]
            start += t.numel()
        return out

    def _merge_forward(self) -> dict[int, ForwardSummary]:
        obs = self._observations
        if not obs:
            return {}
        units = np.array([o.row[0].numel() for o in obs])
        offsets = np.concatenate([[0], np.cumsum(units)[:-1]])
        numel_local = np.array([o.numel for o in obs], dtype=np.float64)
        unit_sums = host(torch.cat([o.row[0] for o in obs])) * np.repeat(numel_local / units, units)
        # one stack and one transfer for each kind of scalar over every observation that has it
        extremes = host(torch.stack([t for o in obs for t in o.row[2:4]])).reshape(len(obs), 2)
        counts = _optional_scalars(obs, 4)
        saturated = _optional_scalars(obs, 5)
        sqs = self._centred_squares(numel_local / units)
        if self.reducer is not None:  # every rank's share of each observation, merged (measure/distributed.py)
            unit_sums, numel_local, sqs, extremes, counts, saturated = self.reducer.forward(
                units, offsets, unit_sums, numel_local, sqs, extremes, counts, saturated)
        with np.errstate(over="ignore", invalid="ignore"):
            sums = np.add.reduceat(unit_sums, offsets).tolist()
            sum_sq_units = np.add.reduceat(unit_sums * unit_sums, offsets).tolist()
        # per-unit flags for every observation at once; a layer's verdict is their union over its
        # observations (one slice when it was observed once, the usual case)
        broken_units = ~np.isfinite(unit_sums)  # NaN/Inf poisons a unit's sum
        fired_units = unit_sums > 0             # a rectifier unit is alive if it ever fired
        # per-observation counts in one call each: a layer observed once (the usual case) reads its own
        broken_counts = np.add.reduceat(broken_units, offsets).tolist()
        fired_counts = np.add.reduceat(fired_units, offsets).tolist()
        bounds = offsets.tolist() + [len(unit_sums)]
        sqs_array = sqs
        sizes, numels, sqs = units.tolist(), [int(n) for n in numel_local], sqs.tolist()
        lows, highs = extremes.T.tolist()

        groups: dict[int, list[int]] = {}
        for k, o in enumerate(obs):
            groups.setdefault(o.index, []).append(k)
        single = single_rows(numel_local, units.astype(np.float64), np.asarray(sums), sqs_array, np.asarray(sum_sq_units))
        out = {}
        for index, ks in groups.items():
            info = self.layers[index]
            once = len(ks) == 1
            if once:  # the usual case: merge_rows of one row, computed for every observation at once
                mean, var, signal = single[0][ks[0]], single[1][ks[0]], single[2][ks[0]]
            else:
                mean, var, signal = merge_rows((numels[k], sizes[k], [sums[k], sqs[k], sum_sq_units[k]]) for k in ks)
            total = sum(numels[k] for k in ks)
            same_layout = once or len({sizes[k] for k in ks}) == 1
            if once:
                nonfinite = int(broken_counts[ks[0]])
            elif same_layout:
                nonfinite = int(np.count_nonzero(union(broken_units, bounds, ks)))
            else:
                nonfinite = sum(int(broken_counts[k]) for k in ks)
            dead = n_units = samples_per_unit = alive = None
            if info.kind in RECTIFIER_KINDS and same_layout:
                n_units = sizes[ks[0]]
                alive = union(fired_units, bounds, ks)
                dead = 1.0 - (int(fired_counts[ks[0]]) if once else int(np.count_nonzero(alive))) / n_units
                samples_per_unit = sum(numels[k] // sizes[k] for k in ks)
            sat = [saturated[k] for k in ks if k in saturated] if saturated else None
            if once:
                lo, hi = lows[ks[0]], highs[ks[0]]
            else:  # numpy's min/max propagate NaN whatever the order
                lo, hi = float(np.min([lows[k] for k in ks])), float(np.max([highs[k] for k in ks]))
            out[index] = ForwardSummary(
                count=total,
                mean=mean,
                std=math.sqrt(var) if var >= 0 else math.nan,  # inf stays inf (float32 overflow)
                signal_std=math.sqrt(signal) if signal is not None and signal >= 0 else (None if signal is None else math.nan),
                min=lo,
                max=hi,
                zero_fraction=zero_fraction([counts.get(k) for k in ks], total, lo, hi),
                nonfinite_units=nonfinite,
                saturation=sum(sat) / total if sat and self._plan(info)[1] is not None else None,
                dead_ratio=dead,
                units=n_units,
                samples_per_unit=samples_per_unit,
                alive=alive,
            )
        return out

    def _centred_squares(self, per_unit: np.ndarray) -> np.ndarray:
        """Each observation's sum of squares about its unit means, from whichever form its row holds
        (a scalar total, or per-unit variances to sum and scale), in two transfers."""
        obs = self._observations
        out = np.empty(len(obs))
        totals = [k for k, o in enumerate(obs) if o.row[1].dim() == 0]
        if totals:
            out[totals] = host(torch.stack([obs[k].row[1] for k in totals]))
        per_unit_var = [k for k, o in enumerate(obs) if o.row[1].dim() == 1]
        if per_unit_var:
            variances = host(torch.cat([obs[k].row[1] for k in per_unit_var]))
            sizes = np.array([obs[k].row[1].numel() for k in per_unit_var])
            with np.errstate(over="ignore", invalid="ignore"):
                sums = np.add.reduceat(variances, np.concatenate([[0], np.cumsum(sizes)[:-1]]))
                out[per_unit_var] = sums * per_unit[per_unit_var]
        return out

    def _merge_grads(self) -> dict[int, tuple[float, int, int]]:
        """Per layer: gradient RMS (inf if float32 squares overflowed), element count, passes with NaN/Inf."""
        if not self._grads:
            return {}
        rows = host(torch.stack([t for _, _, m in self._grads for t in (m.second, m.sentinel)])).reshape(-1, 2)
        squares = np.array([m.sum_of_squares(second, sentinel, n) for (_, n, m), (second, sentinel)
                            in zip(self._grads, rows.tolist())])
        if self.grad_scale != 1.0:  # a loss-scaled backward: statistics of the gradients the optimiser steps with
            squares = squares / (self.grad_scale * self.grad_scale)
        numels = np.array([n for _, n, _ in self._grads], dtype=np.float64)
        broken = ~np.isfinite(rows[:, 1])
        if self.reducer is not None:
            squares, numels, broken = self.reducer.gradients(squares, numels, broken)
        merged: dict[int, list[float]] = {}
        for (index, _, _), square, n, bad in zip(self._grads, squares.tolist(), numels.tolist(), broken.tolist()):
            acc = merged.setdefault(index, [0.0, 0, 0])
            acc[0] += square
            acc[1] += n
            acc[2] += 1 if bad else 0
        return {i: (math.sqrt(a[0] / a[1]), int(a[1]), int(a[2])) for i, a in merged.items()}


def _optional_scalars(obs: list[_Observation], slot: int) -> dict[int, float]:
    """Observation number -> the scalar in ``slot`` of its row, for the rows that measured it."""
    have = [k for k, o in enumerate(obs) if o.row[slot] is not None]
    if not have:
        return {}
    return dict(zip(have, host(torch.stack([obs[k].row[slot] for k in have])).tolist()))
