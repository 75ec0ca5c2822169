"""QuantizeLinear / DequantizeLinear for integer types torch supports (int8/uint8/int16/uint16/int32).

Quantized (QDQ) models store weights as integers plus a float scale; the scale
is the float initializer that receives a gradient.  float8/int4 variants are
rejected as unsupported element types.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..dtypes import to_torch_dtype
from ..registry import NodeContext, register
from ._util import norm_axis

Tensor = torch.Tensor


def _broadcast(param: Tensor, x: Tensor, ctx: NodeContext) -> Tensor:
    """Scale/zero-point broadcast: scalar, per-axis (1-D) or blocked (same rank as x)."""
    if param.numel() == 1 and param.dim() <= 1:
        return param.reshape(())
    axis = norm_axis(ctx.attr("axis", 1), x.dim())
    block = ctx.attr("block_size", 0)
    if block:
        return param.repeat_interleave(block, axis).narrow(axis, 0, x.shape[axis])
    shape = [1] * x.dim()
    shape[axis] = -1
    return param.reshape(shape)


@register("DequantizeLinear", since=10)
def dequantize(ctx: NodeContext, inp: list) -> Tensor:
    x, scale = inp[0], inp[1]
    zp: Optional[Tensor] = inp[2] if len(inp) > 2 else None
    s = _broadcast(scale, x, ctx)
    xf = x.to(torch.float64 if x.dtype == torch.int32 else torch.float32)
    if zp is not None:
        xf = xf - _broadcast(zp, x, ctx).to(xf.dtype)
    out_dt = to_torch_dtype(ctx.attr("output_dtype")) if ctx.attr("output_dtype") else scale.dtype
    return (xf.to(s.dtype) * s).to(out_dt)


@register("QuantizeLinear", since=10)
def quantize(ctx: NodeContext, inp: list) -> Tensor:
    x, scale = inp[0], inp[1]
    zp: Optional[Tensor] = inp[2] if len(inp) > 2 else None
    if ctx.attr("output_dtype"):
        dt = to_torch_dtype(ctx.attr("output_dtype"))
    else:
        dt = zp.dtype if zp is not None else torch.uint8
    q = torch.round(x.to(torch.float32) / _broadcast(scale, x, ctx).to(torch.float32))  # half to even
    if zp is not None:
        q = q + _broadcast(zp, x, ctx).to(torch.float32)
    info = torch.iinfo(dt)
    return q.clamp(info.min, info.max).to(dt)
