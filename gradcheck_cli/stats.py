"""Streaming per-layer statistics, computed on the tensor's device and never retained.

The hot path (:meth:`StatsCollector.observe` and the gradient hook it installs) launches two to
four read-only reductions per activation (per-unit moments, min/max, and after an activation
function the nonzero count) and one per gradient, and keeps only their small results as device
tensors: no copy of the activation, no host synchronisation on an accelerator. On CPU, where a
scalar result is already in host memory, two checks read one to skip work: the uncentred
shortcut's precision test and the gradient's finiteness sentinel.
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

from gradcheck_cli.kinds import DENSE_KINDS, RECTIFIER_KINDS, Saturation, saturation_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

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
    zero_fraction: float | None
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
                scratch: torch.Tensor | None = None, count_zeros: bool = True) -> list[torch.Tensor | None]:
    """The device-side reductions of one tensor: [unit means, second moment, min, max, nonzero, saturated].

    The per-unit mean gives the mean, the spread of the unit means, whether a rectifier unit ever
    fired (its outputs are >= 0) and which units hold NaN/Inf (they poison it). The second moment
    is taken about each unit's own mean, because E[x^2] - mean^2 in float32 loses everything below
    ~1e-3 of the RMS, exactly where a collapsing network's signal lives; the total second moment
    is then exact too (the unit means' part is added back on the host). It comes in one of two
    forms, chosen for speed on the device at hand (see :func:`_unit_moments`): per-unit variances
    (a vector), or the centred sum of squares (a scalar). Every reduction is one of torch's fast
    single passes in the tensor's float32 (float64 accumulation costs 4-20x on CPU); squares
    beyond float32's range (|x| > 1.8e19) overflow to an infinite std, reported as such.

    The nonzero count (``count_zeros``) and the saturated count are None when not asked for: each
    costs a write and a read of the whole tensor, and exact zeros only mean something after an
    activation (sparsity, dead units), not after an affine map or a normalisation.

    The elementwise temporaries (centred values, the nonzero test, the saturation test) share one
    buffer, ``scratch`` if given (x's shape, contiguous; see :class:`ScratchPool`), else one
    allocated here on first need and dropped on return: on CPU an activation-sized allocation costs
    about as much as the arithmetic (fresh pages fault), so at most one is made.
    """
    buffer = scratch

    def temporary() -> torch.Tensor:
        nonlocal buffer
        if buffer is None:
            buffer = torch.empty_like(x, memory_format=torch.contiguous_format)
        return buffer

    means, second = _unit_moments(x, unit_dim, temporary)
    lo, hi = torch.aminmax(x)
    nonzero = count_nonzero(x, temporary()) if count_zeros else None
    saturated = None
    if saturation is not None:  # |x - centre| >= cutoff as 1.0/0.0 in place, summed in one fast pass
        saturated = torch.sub(x, saturation.centre, out=temporary()).abs_().ge_(saturation.cutoff).sum()
    return [means, second, lo, hi, nonzero, saturated]


RAW_MOMENT_AMPLIFICATION = 16.0
"""How far the uncentred shortcut in :func:`_unit_moments` may amplify a float32 dot's rounding
error: the centred sum of squares is raw - between, so its relative error is the dot's (measured
2e-5 over 16M elements) times raw / centred. Accepted up to 16x, i.e. about 3e-4; beyond that
(a mean more than ~4 standard deviations from zero: sigmoid outputs, a collapsing signal) the
exact centred pass runs instead."""


def _unit_moments(x: torch.Tensor, unit_dim: int | None,
                  temporary: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-unit means (a vector) and the second moment about them: per-unit population variances
    (a vector) or the centred sum of squares (a 0-d tensor).

    Units in the last dimension of a contiguous CPU tensor (linear, attention, embedding outputs:
    most layers) go through ``batch_norm_update_stats``, one fused per-feature mean/variance kernel
    that writes no temporary: 1.6-6x faster than sum, subtract, square-sum (measured on a 2-core
    x86 VM: 13 vs 21 us for 64x512, 294 vs 1892 us for 4096x1024, 21 vs 62 us for 1x128x1280).
    For channel-first layouts (N, C, H, W) the same kernel is 2.6-4x slower on CPU than plain
    reductions. There, on CPU, the unit sums and one BLAS dot give the centred sum of squares as
    raw - between in two read-only passes; the two scalars are in host memory already, so checking
    that the subtraction kept its precision (:data:`RAW_MOMENT_AMPLIFICATION`) costs no
    synchronisation, and when it did not, the exact pass (centre into ``temporary()``, dot) runs.
    In the ResNet benchmark that halves the moments' cost (16 MB conv outputs: 8 vs 23 ms a step).
    CUDA keeps the exact pass: its reductions are single fast passes, and a check would synchronise.
    """
    if unit_dim is not None and unit_dim == x.dim() - 1 and x.dim() >= 2 and x.device.type == "cpu" and x.is_contiguous():
        return torch.batch_norm_update_stats(x.view(-1, x.shape[-1]), None, None, 0.0)
    dims = tuple(d for d in range(x.dim()) if unit_dim is None or d != unit_dim)
    if not dims:  # a 0-d output, or one value per unit: nothing to centre within a unit
        return x.reshape(-1), x.new_zeros(())
    per_unit = x.numel() // x.shape[unit_dim] if unit_dim is not None else x.numel()
    sums = x.sum(dim=dims, keepdim=True)
    if x.device.type == "cpu" and x.is_contiguous():
        raw = sum_of_squares(x.view(-1))
        centred = raw.double() - sums.double().square().sum() / per_unit
        if math.isfinite(centred.item()) and centred.item() * RAW_MOMENT_AMPLIFICATION >= raw.item():
            return sums.reshape(-1).div_(per_unit), centred
    means = sums.div_(per_unit)
    return means.reshape(-1), sum_of_squares(torch.sub(x, means, out=temporary()).view(-1))


def squares_of(t: torch.Tensor) -> torch.Tensor:
    """Sum of squares of any tensor, as a device scalar (float32 at least: half squares overflow at 256)."""
    if t.dtype in (torch.float16, torch.bfloat16) or not t.is_contiguous():
        return torch.linalg.vector_norm(t, dtype=torch.promote_types(t.dtype, torch.float32)).square()
    return sum_of_squares(t.view(-1))


def sum_of_squares(flat: torch.Tensor) -> torch.Tensor:
    """Sum of squares of a contiguous 1-d tensor as a device scalar. A BLAS dot is ~2x faster than
    ``vector_norm(...).square()`` on CPU (one fused multiply-add pass); BLAS counts in 32-bit
    integers, so larger tensors take the norm."""
    if flat.numel() < 2**31:
        return torch.dot(flat, flat)
    return torch.linalg.vector_norm(flat).square()


def _gradient_sums(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of squares, a sentinel whose finiteness says whether the gradient was finite).

    NaN/Inf in the gradient poison its sum; the squares alone cannot tell an Inf from the float32
    overflow of a finite square (|g| > 1.8e19). On CPU the squares are in host memory already: when
    they are finite, every element was, and the squares are their own sentinel, so the second pass
    is skipped (the usual case). Elsewhere the sum is always taken: reading the squares would
    synchronise with the device.
    """
    squares = squares_of(grad)
    if grad.device.type == "cpu" and math.isfinite(squares.item()):
        return squares, squares
    return squares, grad.sum()


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


class ScratchPool:
    """One small reusable buffer for the elementwise temporaries of small CPU tensors.

    Allocating and freeing a 128 KiB temporary per layer costs more than the reductions over it on
    CPU: glibc hands such blocks back to the kernel on free, so every fresh one page-faults (about
    40 us of the ~100 us a 64x512 activation took, measured in place in the 30-layer MLP). Tensors
    up to ``limit`` bytes get a view of one buffer instead, cached per shape, so the hot path makes
    no allocation and no view; larger tensors allocate their own (the pass over them dwarfs the
    allocation) and drop it at once, so the peak memory grows by ``limit`` at most -- not by the
    largest activation, which a buffer for every size would add (+14% on the small GPT-2). CUDA's
    caching allocator makes allocation cheap, so CUDA tensors always allocate.
    """

    def __init__(self, limit: int = 1 << 20) -> None:
        self.limit = limit
        self._buffer: torch.Tensor | None = None
        self._views: dict[tuple[tuple[int, ...], torch.dtype], torch.Tensor] = {}

    def get(self, x: torch.Tensor) -> torch.Tensor | None:
        """A contiguous tensor of x's shape and dtype to overwrite, or None (allocate your own)."""
        if x.device.type != "cpu":
            return None
        key = (x.shape, x.dtype)
        view = self._views.get(key)
        if view is not None:
            return view
        nbytes = x.numel() * x.element_size()
        if nbytes > self.limit:
            return None
        if self._buffer is None:
            self._buffer = torch.empty(self.limit, dtype=torch.uint8)
        view = self._views[key] = self._buffer[:nbytes].view(x.dtype).view(x.shape)
        return view


@dataclass
class _Observation:
    index: int
    numel: int
    row: list[torch.Tensor | None]


class StatsCollector:
    """Receives layer outputs during forward, output gradients during backward; summarises at the end."""

    def __init__(self, sample_units: int | None = None, seed: int = 0) -> None:
        self.layers: list[LayerInfo] = []
        self._observations: list[_Observation] = []
        self._grads: list[tuple[int, int, torch.Tensor, torch.Tensor]] = []  # index, numel, sum of squares, sum
        self._channel_first = False
        self._sample_units = sample_units
        self._seed = seed
        self._samples: dict[tuple[int, int, torch.device], torch.Tensor] = {}
        self._scratch = ScratchPool()

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
        row = forward_row(x, saturation_for(info.kind, info.attrs), unit_dim, self._scratch.get(x),
                          count_zeros=info.kind not in DENSE_KINDS)
        self._observations.append(_Observation(info.index, x.numel(), row))
        if output.requires_grad:
            self._hook_gradient(output, info.index)

    def _unit_sample(self, index: int, units: int, device: torch.device) -> torch.Tensor:
        """``--sample-stats K``: the same K units of a layer on every call and batch, seeded per layer,
        so a unit's dead/alive verdict still rests on every sample it saw."""
        key = (index, units, device)
        if key not in self._samples:
            generator = torch.Generator().manual_seed(self._seed * 1_000_003 + index)
            chosen = torch.randperm(units, generator=generator)[: self._sample_units].sort().values
            self._samples[key] = chosen.to(device)
        return self._samples[key]

    def _hook_gradient(self, output: torch.Tensor, index: int) -> None:
        """Measure the gradient reaching ``output`` during backward.

        The hook goes on the autograd node that made the tensor, as a pre-hook reading the
        tensor's slot: it sees the same gradient as ``Tensor.register_hook`` (the sum over all
        consumers, and the pre-modification value if the tensor is later changed in place), but
        skips the Python-side bookkeeping of a tensor hook, which is several microseconds per
        layer per call. A leaf (no node) takes the tensor hook.
        """
        numel, node, slot = output.numel(), output.grad_fn, output.output_nr
        grads = self._grads

        def measure(grad: torch.Tensor | None) -> None:
            if grad is not None:
                grads.append((index, numel, *_gradient_sums(grad)))

        if node is None:
            output.register_hook(lambda grad: measure(grad.detach()))
        else:
            node.register_prehook(lambda grad_outputs: measure(grad_outputs[slot]))

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
        per_unit = np.array([o.numel for o in obs]) / units
        unit_sums = _host(torch.cat([o.row[0] for o in obs])) * np.repeat(per_unit, units)
        # one stack and one transfer for each kind of scalar over every observation that has it
        extremes = _host(torch.stack([t.float() for o in obs for t in o.row[2:4]])).reshape(len(obs), 2)
        counts = _optional_scalars(obs, 4)
        saturated = _optional_scalars(obs, 5)
        sqs = self._centred_squares(per_unit)
        with np.errstate(over="ignore", invalid="ignore"):
            sums = np.add.reduceat(unit_sums, offsets).tolist()
            sum_sq_units = np.add.reduceat(unit_sums * unit_sums, offsets).tolist()
        # per-unit flags for every observation at once; a layer's verdict is their union over its
        # observations (one slice when it was observed once, the usual case)
        broken_units = ~np.isfinite(unit_sums)  # NaN/Inf poisons a unit's sum
        fired_units = unit_sums > 0             # a rectifier unit is alive if it ever fired
        bounds = offsets.tolist() + [len(unit_sums)]
        sizes, numels, sqs = units.tolist(), [o.numel for o in obs], sqs.tolist()
        lows, highs = extremes.T.tolist()

        groups: dict[int, list[int]] = {}
        for k, o in enumerate(obs):
            groups.setdefault(o.index, []).append(k)
        out = {}
        for index, ks in groups.items():
            info = self.layers[index]
            mean, var, signal = merge_rows((numels[k], sizes[k], [sums[k], sqs[k], sum_sq_units[k]]) for k in ks)
            total = sum(numels[k] for k in ks)
            same_layout = len({sizes[k] for k in ks}) == 1
            nonfinite = int(np.count_nonzero(_union(broken_units, bounds, ks))) if same_layout else sum(
                int(np.count_nonzero(broken_units[bounds[k] : bounds[k + 1]])) for k in ks)
            dead = n_units = samples_per_unit = None
            if info.kind in RECTIFIER_KINDS and same_layout:
                n_units = sizes[ks[0]]
                dead = 1.0 - int(np.count_nonzero(_union(fired_units, bounds, ks))) / n_units
                samples_per_unit = sum(numels[k] // sizes[k] for k in ks)
            sat = [saturated[k] for k in ks if k in saturated]
            if len(ks) == 1:
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
                zero_fraction=_zero_fraction([counts.get(k) for k in ks], total, lo, hi),
                nonfinite_units=nonfinite,
                saturation=sum(sat) / total if saturation_for(info.kind, info.attrs) and sat else None,
                dead_ratio=dead,
                units=n_units,
                samples_per_unit=samples_per_unit,
            )
        return out

    def _centred_squares(self, per_unit: np.ndarray) -> np.ndarray:
        """Each observation's sum of squares about its unit means, from whichever form its row holds
        (a scalar total, or per-unit variances to sum and scale), in two transfers."""
        obs = self._observations
        out = np.empty(len(obs))
        totals = [k for k, o in enumerate(obs) if o.row[1].dim() == 0]
        if totals:
            out[totals] = _host(torch.stack([obs[k].row[1].float() for k in totals]))
        per_unit_var = [k for k, o in enumerate(obs) if o.row[1].dim() == 1]
        if per_unit_var:
            variances = _host(torch.cat([obs[k].row[1] for k in per_unit_var]))
            sizes = np.array([obs[k].row[1].numel() for k in per_unit_var])
            with np.errstate(over="ignore", invalid="ignore"):
                sums = np.add.reduceat(variances, np.concatenate([[0], np.cumsum(sizes)[:-1]]))
                out[per_unit_var] = sums * per_unit[per_unit_var]
        return out

    def _merge_grads(self) -> dict[int, tuple[float, int, int]]:
        """Per layer: gradient RMS (inf if float32 squares overflowed), element count, passes with NaN/Inf."""
        if not self._grads:
            return {}
        rows = _host(torch.stack([t.float() for _, _, squares, total in self._grads for t in (squares, total)])).reshape(-1, 2)
        merged: dict[int, list[float]] = {}
        for (index, n, _, _), (squares, total) in zip(self._grads, rows):
            acc = merged.setdefault(index, [0.0, 0, 0])
            acc[0] += squares
            acc[1] += n
            acc[2] += 0 if math.isfinite(total) else 1
        return {i: (math.sqrt(a[0] / a[1]), int(a[1]), int(a[2])) for i, a in merged.items()}


def _union(flags: np.ndarray, bounds: list[int], ks: list[int]) -> np.ndarray:
    """Per-unit OR of the flags of observations ``ks`` (all with the same units); observation k's
    flags are ``flags[bounds[k]:bounds[k + 1]]``."""
    parts = [flags[bounds[k] : bounds[k + 1]] for k in ks]
    return parts[0] if len(parts) == 1 else np.logical_or.reduce(parts)


def _optional_scalars(obs: list[_Observation], slot: int) -> dict[int, float]:
    """Observation number -> the scalar in ``slot`` of its row, for the rows that measured it."""
    have = [k for k, o in enumerate(obs) if o.row[slot] is not None]
    if not have:
        return {}
    return dict(zip(have, _host(torch.stack([obs[k].row[slot].double() for k in have])).tolist()))


def _zero_fraction(nonzero: list[float | None], total: int, lo: float, hi: float) -> float | None:
    """Fraction of exact zeros: counted, or implied by the range (none when 0 is outside [min, max],
    all when min = max = 0), else unknown (None: counting was skipped for this kind of layer)."""
    if all(n is not None for n in nonzero):
        return 1.0 - sum(nonzero) / total
    if lo > 0 or hi < 0:
        return 0.0
    if lo == hi == 0:
        return 1.0
    return None


def _host(t: torch.Tensor) -> np.ndarray:
    """One device-to-host transfer, as float64 (int64 for counts)."""
    t = t.detach().cpu()
    return t.numpy() if not t.is_floating_point() else t.double().numpy()
