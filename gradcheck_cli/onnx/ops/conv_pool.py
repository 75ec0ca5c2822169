"""Convolutions and pooling.

torch only has symmetric padding, so asymmetric / auto_pad padding is applied
explicitly with F.pad before calling the op with padding=0.  Pooling output
sizes (ceil_mode) are computed with the ONNX formula and realised by extra end
padding, so torch's own ceil-mode rules never come into play.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..registry import NodeContext, register
from ._util import prod

Tensor = torch.Tensor


def _spatial_attrs(ctx: NodeContext, x: Tensor, kernel: list[int]) -> tuple[list[int], list[int], list[int], list[int]]:
    """(strides, dilations, pads_begin, pads_end) resolving auto_pad."""
    n = len(kernel)
    strides = list(ctx.attr("strides") or [1] * n)
    dil = list(ctx.attr("dilations") or [1] * n)
    auto = ctx.attr("auto_pad", "NOTSET")
    ins = list(x.shape[2:])
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pb, pe = [], []
        for i in range(n):
            out = math.ceil(ins[i] / strides[i])
            total = max((out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - ins[i], 0)
            small, big = total // 2, total - total // 2
            pb.append(small if auto == "SAME_UPPER" else big)
            pe.append(big if auto == "SAME_UPPER" else small)
    elif auto == "VALID":
        pb, pe = [0] * n, [0] * n
    else:
        pads = list(ctx.attr("pads") or [0] * (2 * n))
        pb, pe = pads[:n], pads[n:]
    return strides, dil, pb, pe


def _pad_spec(pb: list[int], pe: list[int]) -> list[int]:
    spec: list[int] = []
    for b, e in zip(reversed(pb), reversed(pe)):
        spec += [b, e]
    return spec


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONVT = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@register("Conv", since=1)
def conv(ctx: NodeContext, inp: list) -> Tensor:
    x, w = inp[0], inp[1]
    b = inp[2] if len(inp) > 2 else None
    kernel = list(w.shape[2:])
    if len(kernel) not in _CONV:
        raise ctx.unsupported(f"{len(kernel)}-D convolution")
    strides, dil, pb, pe = _spatial_attrs(ctx, x, kernel)
    groups = ctx.attr("group", 1)
    if pb == pe:
        return _CONV[len(kernel)](x, w, b, strides, pb, dil, groups)
    x = F.pad(x, _pad_spec(pb, pe))
    return _CONV[len(kernel)](x, w, b, strides, 0, dil, groups)


@register("ConvTranspose", since=1)
def conv_transpose(ctx: NodeContext, inp: list) -> Tensor:
    """Full transposed conv, then output_padding and (possibly asymmetric / negative) cropping."""
    x, w = inp[0], inp[1]
    b = inp[2] if len(inp) > 2 else None
    n = x.dim() - 2
    if n not in _CONVT:
        raise ctx.unsupported(f"{n}-D transposed convolution")
    kernel = list(ctx.attr("kernel_shape") or w.shape[2:])
    strides = list(ctx.attr("strides") or [1] * n)
    dil = list(ctx.attr("dilations") or [1] * n)
    opad = list(ctx.attr("output_padding") or [0] * n)
    groups = ctx.attr("group", 1)
    auto = ctx.attr("auto_pad", "NOTSET")
    ins = list(x.shape[2:])
    full = [strides[i] * (ins[i] - 1) + opad[i] + (kernel[i] - 1) * dil[i] + 1 for i in range(n)]
    out_shape = ctx.attr("output_shape")
    if out_shape:
        out_shape = list(out_shape)[-n:]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [ins[i] * strides[i] for i in range(n)]
    if out_shape:
        pb, pe = [], []
        for i in range(n):
            total = full[i] - out_shape[i]
            if auto == "SAME_UPPER":
                pb.append(total // 2)
                pe.append(total - total // 2)
            else:
                pb.append(total - total // 2)
                pe.append(total // 2)
    elif auto == "VALID":
        pb, pe = [0] * n, [0] * n
    else:
        pads = list(ctx.attr("pads") or [0] * (2 * n))
        pb, pe = pads[:n], pads[n:]
    y = _CONVT[n](x, w, None, strides, 0, 0, groups, dil)
    # output_padding extends the end; then crop pads (negative pads grow with zeros)
    spec: list[int] = []
    for i in reversed(range(n)):
        spec += [-pb[i], opad[i] - pe[i]]
    if any(spec):
        y = F.pad(y, spec)
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * n)
    return y


def _pool_geometry(ctx: NodeContext, x: Tensor) -> tuple[list[int], ...]:
    """kernel, strides, dilations, pads_begin, pads_end (incl. ceil-mode extension), explicit pads_end."""
    kernel = list(ctx.attr("kernel_shape"))
    strides, dil, pb, pe = _spatial_attrs(ctx, x, kernel)
    ceil = bool(ctx.attr("ceil_mode", 0))
    ext: list[int] = []
    for i, size in enumerate(x.shape[2:]):
        eff = (kernel[i] - 1) * dil[i] + 1
        span = size + pb[i] + pe[i] - eff
        out = (math.ceil(span / strides[i]) if ceil else span // strides[i]) + 1
        if ceil and (out - 1) * strides[i] >= size + pb[i]:
            out -= 1  # the last window must start inside the input or the left padding
        need = (out - 1) * strides[i] + eff
        ext.append(max(need - (size + pb[i] + pe[i]), 0) + pe[i])
    return kernel, strides, dil, pb, ext, pe


@register("MaxPool", since=1)
def max_pool(ctx: NodeContext, inp: list) -> tuple:
    x = inp[0]
    n = x.dim() - 2
    if n not in (1, 2, 3):
        raise ctx.unsupported(f"{n}-D pooling")
    kernel, strides, dil, pb, pe_ext, _ = _pool_geometry(ctx, x)
    dt = x.dtype
    xf = x if dt.is_floating_point else x.to(torch.float64)  # torch pools floats only
    xp = F.pad(xf, _pad_spec(pb, pe_ext), value=float("-inf"))
    fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
    if not ctx.wants(1):
        y = fn(xp, kernel, strides, 0, dil)
        return (y if y.dtype == dt else y.to(dt)), None
    y, idx = fn(xp, kernel, strides, 0, dil, return_indices=True)
    # indices are flat within each padded (n, c) plane: convert to ONNX flat tensor indices
    pshape = list(xp.shape[2:])
    ishape = list(x.shape[2:])
    coords = []
    rem = idx
    for d in reversed(pshape):
        coords.append(rem % d)
        rem = rem // d
    coords = [c - p for c, p in zip(reversed(coords), pb)]
    flat = torch.zeros_like(idx)
    if ctx.attr("storage_order", 0):
        mult = 1
        for c, d in zip(coords, ishape):
            flat = flat + c * mult
            mult *= d
    else:
        for c, d in zip(coords, ishape):
            flat = flat * d + c
    nc = torch.arange(x.shape[0] * x.shape[1]).reshape(x.shape[0], x.shape[1], *([1] * n))
    flat = flat + nc * prod(ishape)
    return (y if y.dtype == dt else y.to(dt)), flat


def _window_mean(t: Tensor, kernel: list[int], strides: list[int], dil: list[int]) -> Tensor:
    """Mean over every window (dilated windows via a depthwise ones-kernel convolution)."""
    n = len(kernel)
    if all(d == 1 for d in dil):
        fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
        return fn(t, kernel, strides, 0)
    c = t.shape[1]
    w = torch.full((c, 1, *kernel), 1.0 / prod(kernel), dtype=t.dtype)
    return _CONV[n](t, w, None, strides, 0, dil, c)


@register("AveragePool", since=1)
def average_pool(ctx: NodeContext, inp: list) -> Tensor:
    """sum(x over window) / count, count = window cells inside the input (plus explicit pads
    when count_include_pad=1); both computed with the same window-mean so the ratio is exact."""
    x = inp[0]
    n = x.dim() - 2
    if n not in (1, 2, 3):
        raise ctx.unsupported(f"{n}-D pooling")
    kernel, strides, dil, pb, pe_ext, pe = _pool_geometry(ctx, x)
    xp = F.pad(x, _pad_spec(pb, pe_ext))
    ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    if ctx.attr("count_include_pad", 0):
        mask = F.pad(ones, _pad_spec(pb, pe), value=1.0)
        mask = F.pad(mask, _pad_spec([0] * n, [e - p for e, p in zip(pe_ext, pe)]))
    else:
        mask = F.pad(ones, _pad_spec(pb, pe_ext))
    return _window_mean(xp, kernel, strides, dil) / _window_mean(mask, kernel, strides, dil)


@register("LpPool", since=11)
def lp_pool(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    p = ctx.attr("p", 2)
    kernel, strides, dil, pb, pe_ext, _ = _pool_geometry(ctx, x)
    xp = F.pad(x.abs() ** p, _pad_spec(pb, pe_ext))
    return (_window_mean(xp, kernel, strides, dil) * prod(kernel)) ** (1.0 / p)


@register("GlobalAveragePool", since=1)
def global_average_pool(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    return x.mean(list(range(2, x.dim())), keepdim=True)


@register("GlobalMaxPool", since=1)
def global_max_pool(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    return x.amax(list(range(2, x.dim())), keepdim=True)


@register("GlobalLpPool", since=2)
def global_lp_pool(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    return torch.linalg.vector_norm(x, ctx.attr("p", 2), dim=list(range(2, x.dim())), keepdim=True)
