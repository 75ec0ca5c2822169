"""Statistics of a run split across processes, merged exactly: every rank's share of each observation
becomes the observation the single process would have made over the global batch.

Each layer output was observed on every rank over that rank's slice of the batch, in the same order
(same model, same call sequence). Per observation the sums merge by addition -- unit sums, element
counts, nonzero and saturation counts, gradient sums of squares -- and so does each rank's
sum of squares about zero, ``centred + sum_u (unit sum)^2 / n_u``, from which the global centred
sum follows once the unit sums are global (float64 on the host; the single-process path checks the
same cancellation). Min and max merge by a MIN all-reduce of ``[min, -max]``. That is two packed
all-reduces per run after a tiny layout check, never one per layer; everything before them is
already on the host in the collector's own finalize.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gradcheck_cli.errors import AnalysisError


class Reducer:
    """Plugged into :class:`~gradcheck_cli.measure.collector.StatsCollector` (``collector.reducer``)."""

    def __init__(self, group: Any = None) -> None:
        self.group = group

    def _all_reduce(self, values: np.ndarray, op: str) -> np.ndarray:
        import torch.distributed as dist

        tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))
        dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op), group=self.group)
        return tensor.numpy()

    def check(self, observations: list[int], gradients: int) -> None:
        """Every rank saw the same layer outputs (units per observation) and gradients, or the merge is void."""
        layout = np.array([len(observations), sum(observations), float(np.dot(observations, np.arange(len(observations)))),
                           gradients], dtype=np.float64)
        extremes = self._all_reduce(np.concatenate([layout, -layout]), "MAX")
        if not np.array_equal(extremes[:4], -extremes[4:]):
            raise AnalysisError("the processes observed different layers (the model ran differently on some ranks)",
                                hint="run the same model and input shapes on every rank")

    def forward(self, units: np.ndarray, offsets: np.ndarray, unit_sums: np.ndarray, numels: np.ndarray,
                sqs: np.ndarray, extremes: np.ndarray, counts: dict[int, float], saturated: dict[int, float]) -> tuple:
        per_unit = np.repeat(numels / units, units)
        with np.errstate(over="ignore", invalid="ignore"):
            raw = sqs + np.add.reduceat(unit_sums * unit_sums / per_unit, offsets)
        count_keys, sat_keys = sorted(counts), sorted(saturated)
        nan_low, nan_high = np.isnan(extremes[:, 0]), np.isnan(extremes[:, 1])
        packed = np.concatenate([unit_sums, numels, raw, [counts[k] for k in count_keys],
                                 [saturated[k] for k in sat_keys], nan_low, nan_high])
        total = self._all_reduce(packed, "SUM")
        n_units, n_obs = len(unit_sums), len(numels)
        cuts = np.cumsum([n_units, n_obs, n_obs, len(count_keys), len(sat_keys), n_obs])
        unit_sums, numels, raw, count_values, sat_values, any_nan_low, any_nan_high = np.split(total, cuts)
        bounds = self._all_reduce(np.concatenate([np.nan_to_num(extremes[:, 0], nan=np.inf),
                                                  -np.nan_to_num(extremes[:, 1], nan=-np.inf)]), "MIN")
        lows, highs = bounds[:n_obs], -bounds[n_obs:]
        lows[any_nan_low > 0], highs[any_nan_high > 0] = np.nan, np.nan
        with np.errstate(over="ignore", invalid="ignore"):
            sqs = raw - np.add.reduceat(unit_sums * unit_sums / np.repeat(numels / units, units), offsets)
        sqs = np.where(np.isfinite(sqs), np.maximum(sqs, 0.0), sqs)
        return (unit_sums, numels, sqs, np.stack([lows, highs], axis=1),
                dict(zip(count_keys, count_values.tolist())), dict(zip(sat_keys, sat_values.tolist())))

    def gradients(self, squares: np.ndarray, numels: np.ndarray, broken: np.ndarray) -> tuple:
        total = self._all_reduce(np.concatenate([squares, numels, broken.astype(np.float64)]), "SUM")
        n = len(squares)
        return total[:n], total[n : 2 * n], total[2 * n :] > 0


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (FSDP2 parameters and gradients), else the tensor itself."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t
