"""Dense and normalisation layers: Gemm, MatMul, Batch/Layer/Instance/Group/RMS norm, LRN, Dropout.

Normalisations are written so gradients flow to every input that is an
initializer (scale, bias, and for inference-form BatchNormalization also the
running statistics), matching what the exported graph actually computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..dtypes import to_torch_dtype
from ..registry import NodeContext, register
from ._util import norm_axis, scalar

Tensor = torch.Tensor


@register("MatMul", since=1)
def matmul(ctx: NodeContext, inp: list) -> Tensor:
    return torch.matmul(inp[0], inp[1])


@register("Gemm", since=1)  # before 7 the ``broadcast`` attribute only allowed what numpy rules give
def gemm(ctx: NodeContext, inp: list) -> Tensor:
    a, b = inp[0], inp[1]
    c = inp[2] if len(inp) > 2 else None
    if ctx.attr("transA", 0):
        a = a.T
    if ctx.attr("transB", 0):
        b = b.T
    y = a @ b
    alpha, beta = ctx.attr("alpha", 1.0), ctx.attr("beta", 1.0)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return y


def _channel_view(t: Tensor, rank: int) -> Tensor:
    """[C] -> [1, C, 1, ...] for broadcasting against an N,C,... tensor."""
    return t.reshape((1, -1) + (1,) * (rank - 2))


@register("BatchNormalization", since=6)
def batch_norm(ctx: NodeContext, inp: list) -> Tensor | tuple:
    """Inference form uses the given statistics; training form (training_mode=1 from opset 14,
    extra outputs for 7-13, ``is_test=0`` before 7) normalises with batch statistics and also returns the
    updated running statistics (momentum-weighted, population variance, as the reference)."""
    x, scale, bias, mean, var = inp[:5]
    if ctx.opset < 9 and ctx.attr("spatial", 1) == 0:
        raise ctx.unsupported("BatchNormalization with spatial=0 (per-element statistics)")
    eps = ctx.attr("epsilon", 1e-5)
    momentum = ctx.attr("momentum", 0.9)
    if ctx.opset >= 14:
        training = bool(ctx.attr("training_mode", 0))
    elif ctx.opset >= 7:
        training = ctx.num_outputs > 1
    else:
        training = not ctx.attr("is_test", 0)
    r = x.dim()
    if not training:
        inv = torch.rsqrt(_channel_view(var, r) + eps)
        return (x - _channel_view(mean, r)) * inv * _channel_view(scale, r) + _channel_view(bias, r)
    dims = [0] + list(range(2, r))
    y = F.batch_norm(x, None, None, scale, bias, training=True, momentum=0.0, eps=eps)
    if not any(ctx.wants(i) for i in range(1, ctx.num_outputs)):
        return y
    bmean = x.mean(dims)
    bvar = x.var(dims, unbiased=False)
    run_mean = mean * momentum + bmean * (1 - momentum)
    run_var = var * momentum + bvar * (1 - momentum)
    if ctx.opset >= 14:
        return y, run_mean, run_var
    return y, run_mean, run_var, bmean, bvar


@register("InstanceNormalization", since=6)
def instance_norm(ctx: NodeContext, inp: list) -> Tensor:
    x, scale, bias = inp
    return F.instance_norm(x, weight=scale, bias=bias, eps=ctx.attr("epsilon", 1e-5))


def _stash(ctx: NodeContext, x: Tensor) -> torch.dtype:
    st = ctx.attr("stash_type", 1)
    return to_torch_dtype(st) if st else x.dtype


@register("LayerNormalization", since=17)
def layer_norm(ctx: NodeContext, inp: list) -> tuple:
    """Normalises over dims [axis, rank); Mean/InvStdDev keep those dims as 1 (stash_type precision)."""
    x, scale = inp[0], inp[1]
    bias = inp[2] if len(inp) > 2 else None
    axis = norm_axis(ctx.attr("axis", -1), x.dim())
    eps = ctx.attr("epsilon", 1e-5)
    dims = list(range(axis, x.dim()))
    stash = _stash(ctx, x)
    nshape = tuple(x.shape[axis:])
    if x.dtype == stash and tuple(scale.shape) == nshape and (bias is None or tuple(bias.shape) == nshape):
        y = F.layer_norm(x, nshape, scale, bias, eps)  # fused, memory-efficient path
    else:
        xs = x.to(stash)
        m = xs.mean(dims, keepdim=True)
        v = ((xs - m) ** 2).mean(dims, keepdim=True)
        y = ((xs - m) * torch.rsqrt(v + eps)).to(x.dtype) * scale
        if bias is not None:
            y = y + bias
    if not (ctx.wants(1) or ctx.wants(2)):
        return (y,)
    xs = x.to(stash)
    m = xs.mean(dims, keepdim=True)
    inv = torch.rsqrt(((xs - m) ** 2).mean(dims, keepdim=True) + eps)
    return y, m, inv


@register("RMSNormalization", since=23)
def rms_norm(ctx: NodeContext, inp: list) -> Tensor:
    x, scale = inp[0], inp[1]
    axis = norm_axis(ctx.attr("axis", -1), x.dim())
    dims = list(range(axis, x.dim()))
    xs = x.to(_stash(ctx, x))
    y = xs * torch.rsqrt((xs * xs).mean(dims, keepdim=True) + ctx.attr("epsilon", 1e-5))
    return y.to(x.dtype) * scale


@register("GroupNormalization", since=18)
def group_norm(ctx: NodeContext, inp: list) -> Tensor:
    """Opset 18: scale/bias per group; opset 21+: per channel."""
    x, scale, bias = inp
    g = ctx.attr("num_groups")
    eps = ctx.attr("epsilon", 1e-5)
    n, c = x.shape[0], x.shape[1]
    xs = x.to(_stash(ctx, x) if ctx.opset >= 21 else x.dtype).reshape(n, g, -1)
    m = xs.mean(-1, keepdim=True)
    v = ((xs - m) ** 2).mean(-1, keepdim=True)
    y = ((xs - m) * torch.rsqrt(v + eps)).reshape(x.shape).to(x.dtype)
    if ctx.opset < 21:
        scale, bias = scale.repeat_interleave(c // g), bias.repeat_interleave(c // g)
    return y * _channel_view(scale, x.dim()) + _channel_view(bias, x.dim())


@register("LRN", since=1)
def lrn(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    size = ctx.attr("size")
    alpha, beta, bias = ctx.attr("alpha", 1e-4), ctx.attr("beta", 0.75), ctx.attr("bias", 1.0)
    n, c = x.shape[0], x.shape[1]
    sq = (x * x).reshape(n, 1, c, -1)
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = F.pad(sq, (0, 0, lo, hi))
    ssum = F.avg_pool2d(sq, (size, 1), stride=1) * size
    return x / (bias + alpha / size * ssum.reshape(x.shape)) ** beta


@register("MeanVarianceNormalization", since=9)
def mvn(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    axes = ctx.attr("axes", [0, 2, 3])
    m = x.mean(axes, keepdim=True)
    std = torch.sqrt((x * x).mean(axes, keepdim=True) - m * m)
    return (x - m) / (std + 1e-9)


@register("LpNormalization", since=1)
def lp_norm(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    nrm = torch.linalg.vector_norm(x, ctx.attr("p", 2), dim=ctx.attr("axis", -1), keepdim=True)
    return torch.where(nrm == 0, torch.zeros_like(x), x / torch.where(nrm == 0, torch.ones_like(nrm), nrm))


@register("Dropout", since=1)
def dropout(ctx: NodeContext, inp: list) -> tuple:
    """Identity unless the graph asks for training mode (opset 12+ ``training_mode`` input).

    Training-mode masks use torch's RNG (seeded by the ``seed`` attribute when
    given), so they cannot bit-match another runtime's random stream.
    """
    x = inp[0]
    if ctx.opset >= 12:
        ratio = float(scalar(inp[1])) if len(inp) > 1 and inp[1] is not None else 0.5
        training = bool(scalar(inp[2])) if len(inp) > 2 and inp[2] is not None else False
    else:
        ratio, training = ctx.attr("ratio", 0.5), False
    if not training or ratio == 0.0:
        return x, torch.ones(x.shape, dtype=torch.bool)
    gen = None
    if "seed" in ctx.attrs:
        gen = torch.Generator(x.device).manual_seed(int(ctx.attr("seed")))
    keep = torch.rand(x.shape, generator=gen, device=x.device) >= ratio
    return x * keep / (1.0 - ratio), keep
