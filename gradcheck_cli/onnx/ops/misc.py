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


@register("Det", since=11)
def det(ctx: NodeContext, inp: list) -> Tensor:
    return torch.linalg.det(inp[0])


@register("SwiGLU", since=1)
def swiglu(ctx: NodeContext, inp: list) -> Tensor:
    a, b = inp
    return a * torch.sigmoid(ctx.attr("alpha", 1.0) * a) * b


@register("RotaryEmbedding", since=23)
def rotary_embedding(ctx: NodeContext, inp: list) -> Tensor:
    """Rotates the first ``rotary_embedding_dim`` features of every head (halves or interleaved pairs)."""
    x, cos, sin = inp[0], inp[1], inp[2]
    pos = inp[3] if len(inp) > 3 else None
    shape = x.shape
    if x.dim() == 4:  # [batch, heads, seq, head] -> [batch, seq, heads, head]
        x = x.transpose(1, 2)
    else:
        x = x.reshape(shape[0], shape[1], ctx.attr("num_heads"), -1)
    rd = ctx.attr("rotary_embedding_dim", 0) or x.shape[3]
    rot, keep = x[..., :rd], x[..., rd:]
    if pos is not None:
        cos, sin = cos[pos.long()], sin[pos.long()]
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    if ctx.attr("interleaved", 0):
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        x1, x2 = rot.chunk(2, -1)
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    if ctx.attr("interleaved", 0):
        rot = torch.stack([real, imag], -1).reshape(rot.shape)
    else:
        rot = torch.cat([real, imag], -1)
    y = torch.cat([rot, keep], -1)
    return y.reshape(shape) if len(shape) == 3 else y.transpose(1, 2)


def _window(ctx: NodeContext, size_t: Tensor, coeffs: list[float]) -> Tensor:
    """Generalised cosine window sum_k (-1)^k a_k cos(2 pi k n / N'), N' = N (periodic) or N-1."""
    n = int(scalar(size_t))
    denom = n if ctx.attr("periodic", 1) else n - 1
    i = torch.arange(n, dtype=torch.float64)
    w = torch.zeros(n, dtype=torch.float64)
    for k, a in enumerate(coeffs):
        w = w + ((-1) ** k) * a * torch.cos(2 * torch.pi * k * i / denom)
    return w.to(to_torch_dtype(ctx.attr("output_datatype", 1)))


register("HannWindow", since=17)(lambda ctx, inp: _window(ctx, inp[0], [0.5, 0.5]))
register("HammingWindow", since=17)(lambda ctx, inp: _window(ctx, inp[0], [25 / 46, 21 / 46]))
register("BlackmanWindow", since=17)(lambda ctx, inp: _window(ctx, inp[0], [0.42, 0.5, 0.08]))


@register("TensorScatter", since=24)
def tensor_scatter(ctx: NodeContext, inp: list) -> Tensor:
    """KV-cache write: update[b, ..., s] goes to cache[b, ..., write_indices[b] + s] (mod length if circular)."""
    cache, update = inp[0], inp[1]
    widx = inp[2] if len(inp) > 2 and inp[2] is not None else torch.zeros(cache.shape[0], dtype=torch.int64)
    axis = ctx.attr("axis", -2) % cache.dim()
    L, S = cache.shape[axis], update.shape[axis]
    pos = widx.long().reshape(-1, 1) + torch.arange(S).reshape(1, S)  # [batch, S]
    if ctx.attr("mode", "linear") == "circular":
        pos = pos % L
    shape = [1] * cache.dim()
    shape[0], shape[axis] = cache.shape[0], S
    index = pos.reshape(shape).expand(update.shape)
    return torch.scatter(cache, axis, index, update)


@register("BitCast", since=26)
def bitcast(ctx: NodeContext, inp: list) -> Tensor:
    return inp[0].view(to_torch_dtype(ctx.attr("to")))


@register("Unique", since=11)
def unique(ctx: NodeContext, inp: list) -> tuple:
    """numpy.unique semantics (first-occurrence indices); values gathered from x so they stay differentiable."""
    import numpy as np

    from ..dtypes import torch_to_numpy

    x = inp[0]
    axis = ctx.attr("axis")
    arr = torch_to_numpy(x)
    if axis is None:
        _, idx, inv, cnt = np.unique(arr.reshape(-1), True, True, True)
    else:
        axis = axis % x.dim()
        _, idx, inv, cnt = np.unique(arr, True, True, True, axis=axis)
    inv = inv.reshape(-1)
    if not ctx.attr("sorted", 1):
        order = np.argsort(idx)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        idx, cnt, inv = idx[order], cnt[order], rank[inv]
    sel = torch.from_numpy(idx.astype(np.int64)).to(x.device)
    y = x.reshape(-1).index_select(0, sel) if axis is None else x.index_select(axis, sel)
    as_t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.int64)).to(x.device)  # noqa: E731
    return y, as_t(idx), as_t(inv), as_t(cnt)
