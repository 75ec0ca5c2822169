"""Streaming per-layer statistics, computed on the tensor's device and never retained.

The hot path (:meth:`StatsCollector.observe` and the gradient hook it installs) launches four
reductions per tensor and keeps only their small results (per-unit sums, the centred sum of
squares, min/max, a count) as device tensors: no ``.item()``, no host synchronisation, no copy of the activation.
Everything derived from them -- means, variances, dead units, NaN/Inf units -- is computed once
in :meth:`StatsCollector.finalize`, vectorised with numpy after one transfer per table, and
batches merge with Chan's parallel variance formula, so statistics over several batches equal
those over their concatenation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gradcheck_cli.kinds import RECTIFIER_KINDS, Saturation, saturation_for

if TYPE_CHECKING:
    from collections.abc import Iterable

# Kinds whose output is laid out channel-first (N, C, ...): a rectifier after them has channel units.
_CHANNEL_FIRST = frozenset({"conv", "conv_transpose", "batchnorm", "groupnorm", "instancenorm", "pool"})
_FEATURE_LAST = frozenset({"linear", "layernorm", "rmsnorm", "embedding", "attention", "rnn"})


@dataclass
class LayerInfo:
    """One observation point: a module call or a graph node, in forward order."""

    index: int
    name: str
    kind: str
    type_name: str
    params: dict[str, str] = field(default_factory=dict)
    """Role (``weight``/``bias``) -> parameter name, for the layer's parameter-gradient columns."""
    attrs: dict[str, float] = field(default_factory=dict)
    """Hyper-parameters the verdicts need (leaky ``negative_slope``, hardtanh bounds)."""
    shape: tuple[int, ...] | None = None
    """Output shape at the first observation."""
    observable: bool = True
    note: str | None = None
    """Why a layer could not be observed, or anything else the report should say about it."""


@dataclass(frozen=True)
class ForwardSummary:
    count: int
    mean: float
    std: float
    signal_std: float | None
    min: float
    max: float
    zero_fraction: float
    nonfinite_units: int
    saturation: float | None
    dead_ratio: float | None
    units: int | None
    samples_per_unit: float | None


@dataclass(frozen=True)
class LayerStats:
    """Everything measured for one layer, merged over all batches and calls."""

    info: LayerInfo
    forward: ForwardSummary | None
    grad_rms: float | None
    grad_count: int
    grad_nonfinite: int


def forward_row(x: torch.Tensor, saturation: Saturation | None, unit_dim: int | None,
                scratch: torch.Tensor | None = None) -> list[torch.Tensor]:
    """The device-side reductions of one tensor: [unit sums, centred sum of squares, min, max, nonzero(, saturated)].

    The per-unit sum gives the mean, the spread of the unit means, whether a rectifier unit ever
    fired (its outputs are >= 0) and which units hold NaN/Inf (they poison the sum). Squares are
    taken of values centred on their unit's mean -- one transient elementwise temporary -- because
    E[x^2] - mean^2 in float32 loses everything below ~1e-3 of the RMS, exactly where a collapsing
    network's signal lives; the total second moment is then exact too (the unit means' part is
    added back on the host). Every reduction is one of torch's fast single passes in the tensor's
    float32 (float64 accumulation costs 4-20x on CPU); squares beyond float32's range
    (|x| > 1.8e19) overflow to an infinite std, reported as such.

    The elementwise temporaries (centred values, |sign|, the saturation test) share one buffer,
    ``scratch`` if given (x's shape, contiguous), else one allocated here and dropped on return: on
    CPU an activation-sized allocation costs about as much as the arithmetic (fresh pages fault),
    so one is made, not three. Keeping a buffer across layers would be faster still, but would add
    the largest activation to the peak memory (+14% on the small GPT-2, whose logits dominate).
    """
    dims = tuple(d for d in range(x.dim()) if unit_dim is None or d != unit_dim)
    unit_sum = x.sum(dim=dims, keepdim=True) if dims else x
    per_unit = x.numel() // unit_sum.numel()
    if scratch is None:
        scratch = torch.empty_like(x, memory_format=torch.contiguous_format)
    if dims:
        torch.sub(x, unit_sum / per_unit, out=scratch)
    centred_sq = torch.linalg.vector_norm(scratch).square() if dims else x.new_zeros(())
    lo, hi = torch.aminmax(x)
    row = [unit_sum.reshape(-1), centred_sq, lo, hi, count_nonzero(x, scratch)]
    if saturation is not None:  # |x - centre| >= cutoff as 1.0/0.0 in place, summed in one fast pass
        row.append(torch.sub(x, saturation.centre, out=scratch).abs_().ge_(saturation.cutoff).sum())
    return row


def count_nonzero(x: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """Nonzero elements (NaN counts as nonzero), as a device scalar. On CPU ``torch.count_nonzero``
    runs at ~0.4 GB/s (10 ms for a 16x64x64x64 activation, more than the layer itself); ``x != 0``
    written as 1.0/0.0 into the float scratch buffer and summed is 10x faster there, and exact below
    2**24 elements per partial sum (a relative error of 1e-7 beyond, for a fraction). CUDA's
    count_nonzero is a single fast pass, so it is kept there. ``scratch`` (x's shape) is overwritten."""
    if x.is_cuda:
        return torch.count_nonzero(x)
    return torch.ne(x, 0, out=scratch).sum()


def merge_rows(rows: Iterable[tuple[int, int, list[float]]]) -> tuple[float, float, float | None]:
    """(numel, units, [sum, centred sum of squares, sum over units of (unit sum)^2]) per observation
    -> mean, population variance, signal variance.

    The centred sum of squares over n = units x m elements is the signal part: divided by n it is
    each unit's variance across samples and positions, averaged over units (it needs m >= 2). The
    total variance adds the variance of the unit means. Observations merge with Chan et al.'s
    pairwise formula, so several batches give the variance of their concatenation; the signal
    variance is averaged over observations, weighted by size (between-batch shifts of a unit's
    mean are not counted as signal).
    """
    n_total, mean, m2 = 0, 0.0, 0.0
    signal_weight, signal_sum = 0, 0.0
    for n, units, f in rows:
        per_unit = n / units
        row_mean = f[0] / n
        between = max(f[2] / (units * per_unit * per_unit) - row_mean * row_mean, 0.0) if math.isfinite(f[2]) else f[2]
        row_var = f[1] / n + between
        delta = row_mean - mean
        new_total = n_total + n
        mean += delta * n / new_total
        m2 += row_var * n + delta * delta * n_total * n / new_total
        n_total = new_total
        if per_unit >= 2:
            signal_sum += f[1]
            signal_weight += n
    var = m2 / n_total if n_total else math.nan
    signal = signal_sum / signal_weight if signal_weight else None
    return mean, var, signal


@dataclass
class _Observation:
    index: int
    numel: int
    row: list[torch.Tensor]


class StatsCollector:
    """Receives layer outputs during forward, output gradients during backward; summarises at the end."""

    def __init__(self, sample_units: int | None = None, seed: int = 0) -> None:
        self.layers: list[LayerInfo] = []
        self._observations: list[_Observation] = []
        self._grads: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []  # index, numel, norm, sum
        self._channel_first = False
        self._sample_units = sample_units
        self._seed = seed
        self._samples: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def add_layer(self, name: str, kind: str, type_name: str, **extra: Any) -> LayerInfo:
        info = LayerInfo(index=len(self.layers), name=name, kind=kind, type_name=type_name, **extra)
        self.layers.append(info)
        return info

    # -- hot path -------------------------------------------------------------------------------
    def observe(self, info: LayerInfo, output: torch.Tensor) -> None:
        """Record forward statistics of a layer output and hook its gradient. Never synchronises."""
        if info.kind in _CHANNEL_FIRST:
            self._channel_first = True
        elif info.kind in _FEATURE_LAST:
            self._channel_first = False
        if not output.is_floating_point() or output.numel() == 0:
            return
        x = output.detach()
        if info.shape is None:
            info.shape = tuple(x.shape)
        unit_dim = None if x.dim() == 0 else (1 if self._channel_first and x.dim() >= 3 else x.dim() - 1)
        if self._sample_units and unit_dim is not None and x.shape[unit_dim] > self._sample_units:
            x = x.index_select(unit_dim, self._unit_sample(info.index, x.shape[unit_dim], x.device))
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        row = forward_row(x, saturation_for(info.kind, info.attrs), unit_dim)
        self._observations.append(_Observation(info.index, x.numel(), row))
        if output.requires_grad:
            output.register_hook(self._grad_hook(info.index, output.numel()))

    def _unit_sample(self, index: int, units: int, device: torch.device) -> torch.Tensor:
        """``--sample-stats K``: the same K units of a layer on every call and batch, seeded per layer,
        so a unit's dead/alive verdict still rests on every sample it saw."""
        key = (index, units, device)
        if key not in self._samples:
            generator = torch.Generator().manual_seed(self._seed * 1_000_003 + index)
            chosen = torch.randperm(units, generator=generator)[: self._sample_units].sort().values
            self._samples[key] = chosen.to(device)
        return self._samples[key]

    def _grad_hook(self, index: int, numel: int):
        def hook(grad: torch.Tensor) -> None:
            g = grad.detach()
            # NaN/Inf poison the sum; the norm alone cannot tell a real inf from float32 overflow.
            self._grads.append((index, numel, torch.linalg.vector_norm(g), g.sum()))

        return hook

    # -- end of run -------------------------------------------------------------------------------
    def finalize(self) -> list[LayerStats]:
        """Merge every batch and call per layer; the only place that moves data to the host."""
        forwards = self._merge_forward()
        grads = self._merge_grads()
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
                )
            )
        return result

    def _merge_forward(self) -> dict[int, ForwardSummary]:
        obs = self._observations
        if not obs:
            return {}
        units = np.array([o.row[0].numel() for o in obs])
        offsets = np.concatenate([[0], np.cumsum(units)[:-1]])
        unit_sums = _host(torch.cat([o.row[0] for o in obs]))
        # one stack and one transfer for every scalar (sum sq, min, max, nonzero count) of every observation
        scalars = _host(torch.stack([t.float() for o in obs for t in o.row[1:5]])).reshape(len(obs), 4)
        counts = scalars[:, 3]
        with_sat = [k for k, o in enumerate(obs) if len(o.row) > 5]
        saturated = dict(zip(with_sat, _host(torch.stack([obs[k].row[5] for k in with_sat])))) if with_sat else {}
        with np.errstate(over="ignore", invalid="ignore"):
            sums = np.add.reduceat(unit_sums, offsets)
            sqs = scalars[:, 0]
            sum_sq_units = np.add.reduceat(unit_sums * unit_sums, offsets)

        groups: dict[int, list[int]] = {}
        for k, o in enumerate(obs):
            groups.setdefault(o.index, []).append(k)
        out = {}
        for index, ks in groups.items():
            info = self.layers[index]
            mean, var, signal = merge_rows(
                (obs[k].numel, int(units[k]), [float(sums[k]), float(sqs[k]), float(sum_sq_units[k])]) for k in ks
            )
            total = sum(obs[k].numel for k in ks)
            layer_sums = [unit_sums[offsets[k] : offsets[k] + units[k]] for k in ks]
            same_layout = len({len(u) for u in layer_sums}) == 1
            broken = [~np.isfinite(u) for u in layer_sums]  # units whose outputs held NaN/Inf
            nonfinite = int(np.logical_or.reduce(broken).sum()) if same_layout else int(sum(b.sum() for b in broken))
            dead = n_units = samples_per_unit = None
            if info.kind in RECTIFIER_KINDS and same_layout:
                alive = np.logical_or.reduce([u > 0 for u in layer_sums])
                n_units = len(alive)
                dead = 1.0 - alive.sum() / n_units
                samples_per_unit = sum(obs[k].numel // int(units[k]) for k in ks)
            sat = [saturated[k] for k in ks if k in saturated]
            out[index] = ForwardSummary(
                count=total,
                mean=mean,
                std=math.sqrt(var) if var >= 0 else math.nan,  # inf stays inf (float32 overflow)
                signal_std=math.sqrt(signal) if signal is not None and signal >= 0 else (None if signal is None else math.nan),
                min=float(min(scalars[k][1] for k in ks)),
                max=float(max(scalars[k][2] for k in ks)),
                zero_fraction=1.0 - float(sum(counts[k] for k in ks)) / total,
                nonfinite_units=nonfinite,
                saturation=float(sum(sat)) / total if saturation_for(info.kind, info.attrs) and sat else None,
                dead_ratio=None if dead is None else float(dead),
                units=n_units,
                samples_per_unit=samples_per_unit,
            )
        return out

    def _merge_grads(self) -> dict[int, tuple[float, int, int]]:
        """Per layer: gradient RMS (inf if float32 squares overflowed), element count, passes with NaN/Inf."""
        if not self._grads:
            return {}
        rows = _host(torch.stack([t.float() for _, _, norm, total in self._grads for t in (norm, total)])).reshape(-1, 2)
        merged: dict[int, list[float]] = {}
        for (index, n, _, _), (norm, total) in zip(self._grads, rows):
            acc = merged.setdefault(index, [0.0, 0, 0])
            acc[0] += norm * norm
            acc[1] += n
            acc[2] += 0 if math.isfinite(total) else 1
        return {i: (math.sqrt(a[0] / a[1]), int(a[1]), int(a[2])) for i, a in merged.items()}


def _host(t: torch.Tensor) -> np.ndarray:
    """One device-to-host transfer, as float64 (int64 for counts)."""
    t = t.detach().cpu()
    return t.numpy() if not t.is_floating_point() else t.double().numpy()
