"""Small helpers shared by op implementations."""

from __future__ import annotations

from typing import Optional, Sequence

import torch


def ints(t: Optional[torch.Tensor | Sequence[int]]) -> list[int]:
    """A 0/1-D integer tensor (shape/axes/pads input) as a Python list."""
    if t is None:
        return []
    if isinstance(t, torch.Tensor):
        return [int(v) for v in t.reshape(-1).tolist()]
    return [int(v) for v in t]


def scalar(t: torch.Tensor) -> float | int | bool:
    return t.reshape(-1)[0].item()


def norm_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def norm_axes(axes: Sequence[int], rank: int) -> list[int]:
    return [norm_axis(a, rank) for a in axes]


def prod(xs: Sequence[int]) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p
