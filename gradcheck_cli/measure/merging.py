"""Per-observation rows -> per-layer values, on the host: the merges :meth:`StatsCollector.finalize
<gradcheck_cli.measure.collector.StatsCollector.finalize>` runs once per run (pure numpy and float
arithmetic, apart from the one transfer in :func:`host`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from collections.abc import Iterable


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


def single_rows(n: np.ndarray, units: np.ndarray, f0: np.ndarray, f1: np.ndarray,
                 f2: np.ndarray) -> tuple[list[float], list[float], list[float | None]]:
    """:func:`merge_rows` of each observation alone, vectorised: the same float64 operations in the
    same order (numpy's are IEEE's, as Python's are), so the same bits; an observed-once layer (the
    usual case) reads its values here instead of running the merge in Python."""
    with np.errstate(all="ignore"):
        per_unit = n / units
        row_mean = f0 / n
        between = np.where(np.isfinite(f2), np.maximum(f2 / (units * per_unit * per_unit) - row_mean * row_mean, 0.0), f2)
        row_var = f1 / n + between
        mean = 0.0 + row_mean * n / n
        m2 = 0.0 + (row_var * n + row_mean * row_mean * 0.0 * n / n)
        var = m2 / n
        signal = f1 / n
    signals = [value if keep else None for value, keep in zip(signal.tolist(), (per_unit >= 2).tolist())]
    return mean.tolist(), var.tolist(), signals


def union(flags: np.ndarray, bounds: list[int], ks: list[int]) -> np.ndarray:
    """Per-unit OR of the flags of observations ``ks`` (all with the same units); observation k's
    flags are ``flags[bounds[k]:bounds[k + 1]]``."""
    parts = [flags[bounds[k] : bounds[k + 1]] for k in ks]
    return parts[0] if len(parts) == 1 else np.logical_or.reduce(parts)


def zero_fraction(nonzero: list[float | None], total: int, lo: float, hi: float) -> float | None:
    """Fraction of exact zeros: counted, or implied by the range (none when 0 is outside [min, max],
    all when min = max = 0), else unknown (None: counting was skipped for this kind of layer)."""
    if all(n is not None for n in nonzero):
        return 1.0 - sum(nonzero) / total
    if lo > 0 or hi < 0:
        return 0.0
    if lo == hi == 0:
        return 1.0
    return None


def host(t: torch.Tensor) -> np.ndarray:
    """One device-to-host transfer, as float64 (int64 for counts). The tensors gathered for it are
    stacked as they are: ``torch.stack`` promotes mixed dtypes exactly (float16/32 into float64 here),
    where a cast per scalar cost 0.3-1.8 us each (~0.1 ms for tiny60's 300 scalars)."""
    t = t.detach().cpu()
    return t.numpy() if not t.is_floating_point() else t.double().numpy()
