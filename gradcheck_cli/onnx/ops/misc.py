"""Ops that fit no other family: Einsum, Trilu, EyeLike, ReverseSequence."""

from __future__ import annotations

import torch

from ..dtypes import to_torch_dtype
from ..registry import NodeContext, register
from ._util import scalar

Tensor = torch.Tensor


@register("Einsum", since=12)
def einsum(ctx: NodeContext, inp: list) -> Tensor:
    eq = ctx.attr("equation").replace(" ", "")
    return torch.einsum(eq, *inp)


@register("Trilu", since=14)
def trilu(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    k = int(scalar(inp[1])) if len(inp) > 1 and inp[1] is not None else 0
    return torch.triu(x, k) if ctx.attr("upper", 1) else torch.tril(x, k)


@register("EyeLike", since=9)
def eye_like(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    dt = to_torch_dtype(ctx.attr("dtype")) if ctx.attr("dtype") is not None else x.dtype
    n, m = x.shape
    k = ctx.attr("k", 0)
    i = torch.arange(n).unsqueeze(1)
    j = torch.arange(m).unsqueeze(0)
    return (j - i == k).to(dt)


@register("ReverseSequence", since=10)
def reverse_sequence(ctx: NodeContext, inp: list) -> Tensor:
    x, lens = inp
    batch_axis, time_axis = ctx.attr("batch_axis", 1), ctx.attr("time_axis", 0)
    t = torch.arange(x.shape[time_axis]).unsqueeze(1)  # [T, 1]
    L = lens.long().unsqueeze(0)  # [1, B]
    src = torch.where(t < L, L - 1 - t, t)  # [T, B]
    if time_axis != 0:
        src = src.T
    shape = [1] * x.dim()
    shape[time_axis], shape[batch_axis] = x.shape[time_axis], x.shape[batch_axis]
    src = src.reshape(shape).expand(x.shape)
    return torch.gather(x, time_axis, src)
