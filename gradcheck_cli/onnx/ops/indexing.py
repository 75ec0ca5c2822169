"""Gather/Scatter family, OneHot, NonZero, Compress.

ONNX allows negative indices (counted from the end) everywhere in this family;
torch's gather/scatter do not, so indices are normalised first.  All scatters
are out-of-place so gradients flow to both ``data`` and ``updates``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import NodeContext, register
from ._util import norm_axis, prod, scalar

Tensor = torch.Tensor


def _fix_neg(idx: Tensor, size: int | Tensor) -> Tensor:
    idx = idx.long()
    return torch.where(idx < 0, idx + size, idx)


@register("Gather", since=1)
def gather(ctx: NodeContext, inp: list) -> Tensor:
    data, idx = inp
    axis = norm_axis(ctx.attr("axis", 0), data.dim())
    idx = _fix_neg(idx, data.shape[axis])
    out = data.index_select(axis, idx.reshape(-1))
    return out.reshape(tuple(data.shape[:axis]) + tuple(idx.shape) + tuple(data.shape[axis + 1:]))


@register("GatherElements", since=11)
def gather_elements(ctx: NodeContext, inp: list) -> Tensor:
    data, idx = inp
    axis = norm_axis(ctx.attr("axis", 0), data.dim())
    return torch.gather(data, axis, _fix_neg(idx, data.shape[axis]))


def _nd_index(data_shape: tuple[int, ...], indices: Tensor, batch_dims: int) -> tuple[Tensor, ...]:
    """Advanced-index tuple for (batch-flattened) data from GatherND/ScatterND indices."""
    k = indices.shape[-1]
    cols = []
    for j in range(k):
        cols.append(_fix_neg(indices[..., j], data_shape[batch_dims + j]))
    return tuple(cols)


@register("GatherND", since=11)
def gather_nd(ctx: NodeContext, inp: list) -> Tensor:
    data, indices = inp
    b = ctx.attr("batch_dims", 0)
    bshape = tuple(data.shape[:b])
    nb = prod(bshape)
    d = data.reshape((nb,) + tuple(data.shape[b:]))
    ind = indices.reshape((nb, -1, indices.shape[-1])).long()
    cols = _nd_index(tuple(data.shape), ind, b)
    bidx = torch.arange(nb).reshape(nb, 1).expand(nb, ind.shape[1])
    out = d[(bidx,) + cols]  # [nb, n, rest...]
    k = indices.shape[-1]
    return out.reshape(bshape + tuple(indices.shape[b:-1]) + tuple(data.shape[b + k:]))


@register("ScatterND", since=11)
def scatter_nd(ctx: NodeContext, inp: list) -> Tensor:
    data, indices, updates = inp
    red = ctx.attr("reduction", "none")
    k = indices.shape[-1]
    cols = _nd_index(tuple(data.shape), indices.long(), 0)
    if red == "none":
        return torch.index_put(data, cols, updates)
    if red == "add":
        return torch.index_put(data, cols, updates, accumulate=True)
    lin = torch.zeros_like(cols[0])
    for j, c in enumerate(cols):
        lin = lin * data.shape[j] + c
    rest = tuple(data.shape[k:])
    d2 = data.reshape((prod(data.shape[:k]),) + rest)
    u2 = updates.reshape((-1,) + rest)
    mode = {"mul": "prod", "max": "amax", "min": "amin"}.get(red)
    if mode is None:
        raise ctx.unsupported(f"reduction {red!r}")
    idx = lin.reshape((-1,) + (1,) * len(rest)).expand(u2.shape)
    return d2.scatter_reduce(0, idx, u2, mode, include_self=True).reshape(data.shape)


@register("ScatterElements", "Scatter", since=9)
def scatter_elements(ctx: NodeContext, inp: list) -> Tensor:
    data, idx, updates = inp
    axis = norm_axis(ctx.attr("axis", 0), data.dim())
    idx = _fix_neg(idx, data.shape[axis])
    red = ctx.attr("reduction", "none")
    if red == "none":
        return torch.scatter(data, axis, idx, updates)
    mode = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}.get(red)
    if mode is None:
        raise ctx.unsupported(f"reduction {red!r}")
    return torch.scatter_reduce(data, axis, idx, updates, mode, include_self=True)


@register("OneHot", since=9)
def one_hot(ctx: NodeContext, inp: list) -> Tensor:
    indices, depth_t, values = inp
    depth = int(scalar(depth_t))
    idx = indices.long() if not indices.dtype.is_floating_point else indices.trunc().long()
    idx = torch.where(idx < 0, idx + depth, idx)
    valid = (idx >= 0) & (idx < depth)
    oh = F.one_hot(idx.clamp(0, depth - 1), depth).bool() & valid.unsqueeze(-1)
    axis = norm_axis(ctx.attr("axis", -1), indices.dim() + 1)
    oh = oh.movedim(-1, axis)
    off, on = values.reshape(-1)[0], values.reshape(-1)[1]
    return torch.where(oh, on, off)


@register("NonZero", since=9)
def nonzero(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    if x.dim() == 0:
        return torch.zeros((0, int(bool(x.item()))), dtype=torch.int64)
    return torch.nonzero(x).T.contiguous()


@register("Compress", since=9)
def compress(ctx: NodeContext, inp: list) -> Tensor:
    x, cond = inp
    axis = ctx.attr("axis")
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = norm_axis(axis, x.dim())
    sel = torch.nonzero(cond.reshape(-1).bool()).reshape(-1)
    sel = sel[sel < x.shape[axis]]
    return x.index_select(axis, sel)
