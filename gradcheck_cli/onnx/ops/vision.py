"""Spatial ops: GridSample, AffineGrid, CenterCropPad, Col2Im, MaxUnpool.

GridSample/AffineGrid map to torch's functions (same formulas; ONNX names the
modes linear/cubic from opset 20, bilinear/bicubic before).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import NodeContext, register
from ._util import ints, norm_axes, prod

Tensor = torch.Tensor

_MODES = {"linear": "bilinear", "bilinear": "bilinear", "cubic": "bicubic", "bicubic": "bicubic", "nearest": "nearest"}


@register("GridSample", since=16)
def grid_sample(ctx: NodeContext, inp: list) -> Tensor:
    x, grid = inp
    mode = _MODES.get(ctx.attr("mode", "linear" if ctx.opset >= 20 else "bilinear"))
    if mode is None or x.dim() not in (4, 5) or (x.dim() == 5 and mode == "bicubic"):
        raise ctx.unsupported(f"GridSample mode {ctx.attr('mode')!r} on rank-{x.dim()} input")
    return F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode=ctx.attr("padding_mode", "zeros"),
                         align_corners=bool(ctx.attr("align_corners", 0)))


@register("AffineGrid", since=20)
def affine_grid(ctx: NodeContext, inp: list) -> Tensor:
    theta, size = inp
    return F.affine_grid(theta, ints(size), align_corners=bool(ctx.attr("align_corners", 0)))


@register("CenterCropPad", since=18)
def center_crop_pad(ctx: NodeContext, inp: list) -> Tensor:
    """Crop (centre, extra element dropped at the end) or zero-pad (extra zero at the end) per axis."""
    x, shape = inp[0], ints(inp[1])
    axes = norm_axes(ctx.attr("axes"), x.dim()) if ctx.attr("axes") is not None else list(range(x.dim()))
    spec = [0] * (2 * x.dim())
    for a, target in zip(axes, shape):
        d = target - x.shape[a]  # >0 pad, <0 crop (F.pad crops with negative values)
        before = d // 2 if d >= 0 else -((-d) // 2)
        spec[2 * (x.dim() - 1 - a)] = before
        spec[2 * (x.dim() - 1 - a) + 1] = d - before
    return F.pad(x, spec)


@register("Col2Im", since=18)
def col2im(ctx: NodeContext, inp: list) -> Tensor:
    x, image, block = inp[0], ints(inp[1]), ints(inp[2])
    if len(image) != 2:
        raise ctx.unsupported(f"{len(image)}-D Col2Im (torch's fold is 2-D)")
    pads = list(ctx.attr("pads") or [0] * 4)
    dil = tuple(ctx.attr("dilations") or [1, 1])
    stride = tuple(ctx.attr("strides") or [1, 1])
    if pads[:2] != pads[2:]:  # asymmetric: fold into the padded image, then crop
        padded = [image[i] + pads[i] + pads[i + 2] for i in range(2)]
        y = F.fold(x, tuple(padded), tuple(block), dilation=dil, padding=0, stride=stride)
        return y[..., pads[0]:pads[0] + image[0], pads[1]:pads[1] + image[1]]
    return F.fold(x, tuple(image), tuple(block), dilation=dil, padding=tuple(pads[:2]), stride=stride)


@register("MaxUnpool", since=9)
def max_unpool(ctx: NodeContext, inp: list) -> Tensor:
    """Scatter values to the flat indices MaxPool produced (over the inferred unpooled shape);
    a larger ``output_shape`` zero-extends that result at the end of each dim (reference semantics)."""
    x, idx = inp[0], inp[1]
    out_shape = ints(inp[2]) if len(inp) > 2 and inp[2] is not None else None
    k = ctx.attr("kernel_shape")
    n = len(k)
    strides = list(ctx.attr("strides") or [1] * n)
    pads = list(ctx.attr("pads") or [0] * (2 * n))
    spatial = [(x.shape[2 + i] - 1) * strides[i] + k[i] - pads[i] - pads[i + n] for i in range(n)]
    inferred = list(x.shape[:2]) + spatial
    flat = torch.zeros(prod(inferred), dtype=x.dtype)
    y = flat.scatter(0, idx.reshape(-1).long(), x.reshape(-1)).reshape(inferred)
    if out_shape is None or list(out_shape) == inferred:
        return y
    spec: list[int] = []
    for have, want in zip(reversed(inferred), reversed(out_shape)):
        spec += [0, want - have]
    return F.pad(y, spec)
