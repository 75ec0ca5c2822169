"""Shape-manipulation ops: Constant, Reshape, Transpose, (Un)Squeeze, Concat, Split, Slice, Pad, ...

Version differences handled here: attribute -> input migrations (Squeeze/
Unsqueeze/Split at 13, Slice at 10, Pad at 11), Reshape ``allowzero`` (14),
Split ``num_outputs`` (18), Shape ``start``/``end`` (15) and Pad ``axes`` (18).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..registry import NodeContext, register
from ._util import ints, norm_axes, norm_axis, prod, scalar

Tensor = torch.Tensor


@register("Constant", since=1)
def constant(ctx: NodeContext, inp: list) -> Tensor:
    a = ctx.attrs
    dev = torch.get_default_device()  # the module's device while it runs (see OnnxModule.forward)
    if "value" in a:
        return a["value"].to(dev)
    if "sparse_value" in a:
        return a["sparse_value"].to(dev)
    if "value_float" in a:
        return torch.tensor(a["value_float"], dtype=torch.float32)
    if "value_floats" in a:
        return torch.tensor(a["value_floats"], dtype=torch.float32)
    if "value_int" in a:
        return torch.tensor(a["value_int"], dtype=torch.int64)
    if "value_ints" in a:
        return torch.tensor(a["value_ints"], dtype=torch.int64)
    raise ctx.unsupported(f"Constant attribute {sorted(a)} (string constants are not supported)")


@register("Reshape", since=5)
def reshape(ctx: NodeContext, inp: list) -> Tensor:
    """0 copies the input dim (unless allowzero=1, where 0 is a real zero dim); -1 is inferred."""
    x, shape = inp[0], ints(inp[1])
    if not ctx.attr("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


@register("Transpose", since=1)
def transpose(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    perm = ctx.attr("perm") or list(range(x.dim() - 1, -1, -1))
    return x.permute(*perm)


@register("Flatten", since=1)
def flatten(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    axis = ctx.attr("axis", 1)
    if axis < 0:
        axis += x.dim()
    return x.reshape(prod(x.shape[:axis]), prod(x.shape[axis:]))


def _axes(ctx: NodeContext, inp: list, input_since: int) -> list[int] | None:
    """Axes from the optional 2nd input (opset >= input_since) or the ``axes`` attribute."""
    if ctx.opset >= input_since:
        return ints(inp[1]) if len(inp) > 1 and inp[1] is not None else None
    return ctx.attr("axes")


@register("Squeeze", since=1)
def squeeze(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    axes = _axes(ctx, inp, 13)
    if not axes:
        return x.reshape([d for d in x.shape if d != 1])
    drop = set(norm_axes(axes, x.dim()))
    for a in drop:
        if x.shape[a] != 1:
            raise ValueError(f"Squeeze axis {a} has size {x.shape[a]}")
    return x.reshape([d for i, d in enumerate(x.shape) if i not in drop])


@register("Unsqueeze", since=1)
def unsqueeze(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    axes = _axes(ctx, inp, 13) or []
    out_rank = x.dim() + len(axes)
    for a in sorted(norm_axes(axes, out_rank)):
        x = x.unsqueeze(a)
    return x


@register("Concat", since=4)
def concat(ctx: NodeContext, inp: list) -> Tensor:
    xs = [t for t in inp if t is not None]
    return torch.cat(xs, dim=norm_axis(ctx.attr("axis"), xs[0].dim()))


@register("Split", since=2)
def split(ctx: NodeContext, inp: list) -> tuple[Tensor, ...]:
    x = inp[0]
    axis = norm_axis(ctx.attr("axis", 0), x.dim())
    dim = x.shape[axis]
    if ctx.opset >= 13:
        sizes = ints(inp[1]) if len(inp) > 1 and inp[1] is not None else None
    else:
        sizes = ctx.attr("split")
    if not sizes:
        n = ctx.attr("num_outputs", ctx.num_outputs)
        if ctx.opset >= 18 and "num_outputs" in ctx.attrs:
            chunk = math.ceil(dim / n)
            sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
        else:
            if dim % n:
                raise ValueError(f"cannot split dim {dim} evenly into {n} outputs")
            sizes = [dim // n] * n
    return tuple(torch.split(x, sizes, dim=axis))


@register("Shape", since=1)
def shape(ctx: NodeContext, inp: list) -> Tensor:
    dims = list(inp[0].shape)
    start, end = ctx.attr("start", 0), ctx.attr("end", None)
    return torch.tensor(dims[start:end], dtype=torch.int64)


@register("Size", since=1)
def size(ctx: NodeContext, inp: list) -> Tensor:
    return torch.tensor(inp[0].numel(), dtype=torch.int64)


@register("Expand", since=8)
def expand(ctx: NodeContext, inp: list) -> Tensor:
    """Bidirectional broadcast: the target shape may itself be broadcast by the input."""
    x = inp[0]
    out = torch.broadcast_shapes(tuple(x.shape), tuple(ints(inp[1])))
    return x.expand(out)


@register("ConstantOfShape", since=9)
def constant_of_shape(ctx: NodeContext, inp: list) -> Tensor:
    v = ctx.attr("value")
    if v is None:
        v = torch.zeros(1, dtype=torch.float32)
    return torch.full(ints(inp[0]), v.reshape(-1)[0].item(), dtype=v.dtype, device=inp[0].device)


@register("Tile", since=6)
def tile(ctx: NodeContext, inp: list) -> Tensor:
    return inp[0].repeat(*ints(inp[1])) if inp[0].dim() else inp[0]


@register("Range", since=11)
def range_(ctx: NodeContext, inp: list) -> Tensor:
    start, limit, delta = inp
    dt = start.dtype
    s, lim, d = scalar(start), scalar(limit), scalar(delta)
    n = max(math.ceil((lim - s) / d), 0)
    if dt.is_floating_point:
        # start + i*delta computed in the output type, like the reference loop
        return start.reshape(()) + torch.arange(n, dtype=dt) * delta.reshape(())
    return torch.arange(n, dtype=torch.int64).mul(d).add(s).to(dt)


@register("Slice", since=1)
def slice_(ctx: NodeContext, inp: list) -> Tensor:
    """numpy-style slicing with ONNX clamping; negative steps via index_select."""
    x = inp[0]
    if ctx.opset < 10:
        starts, ends = ctx.attr("starts"), ctx.attr("ends")
        axes, steps = ctx.attr("axes"), None
    else:
        starts, ends = ints(inp[1]), ints(inp[2])
        axes = ints(inp[3]) if len(inp) > 3 and inp[3] is not None else None
        steps = ints(inp[4]) if len(inp) > 4 and inp[4] is not None else None
    axes = norm_axes(axes, x.dim()) if axes is not None else list(range(len(starts)))
    steps = steps or [1] * len(starts)
    index: list[slice] = [slice(None)] * x.dim()
    flips: list[tuple[int, range]] = []
    for a, s, e, st in zip(axes, starts, ends, steps):
        if st == 0:
            raise ValueError("Slice step cannot be 0")
        r = range(*slice(s, e, st).indices(x.shape[a]))  # Python clamping == ONNX clamping
        if st > 0:
            index[a] = slice(r.start, r.stop if len(r) else r.start, st)
        else:
            flips.append((a, r))
    y = x[tuple(index)]
    for a, r in flips:
        y = y.index_select(a, torch.tensor(list(r), dtype=torch.long))
    return y


def _pad_indices(n: int, before: int, after: int, mode: str) -> torch.Tensor:
    i = torch.arange(-before, n + after)
    if mode == "edge":
        return i.clamp(0, n - 1)
    if mode == "wrap":
        return i.remainder(n)
    # reflect (mirror without repeating the edge), period 2(n-1)
    if n == 1:
        return torch.zeros_like(i)
    p = 2 * (n - 1)
    i = i.remainder(p)
    return torch.where(i >= n, p - i, i)


@register("Pad", since=2)
def pad(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    mode = ctx.attr("mode", "constant")
    r = x.dim()
    if ctx.opset < 11:
        pads, value, axes = ctx.attr("pads"), ctx.attr("value", 0.0), None
    else:
        pads = ints(inp[1])
        value = scalar(inp[2]) if len(inp) > 2 and inp[2] is not None and inp[2].numel() else 0
        axes = ints(inp[3]) if len(inp) > 3 and inp[3] is not None else None
    axes = norm_axes(axes, r) if axes is not None else list(range(r))
    k = len(axes)
    before = dict(zip(axes, pads[:k]))
    after = dict(zip(axes, pads[k:]))
    # negative pads crop
    index = [slice(max(-before.get(a, 0), 0), x.shape[a] - max(-after.get(a, 0), 0)) for a in range(r)]
    x = x[tuple(index)]
    if mode == "constant":
        spec: list[int] = []
        for a in reversed(range(r)):
            spec += [max(before.get(a, 0), 0), max(after.get(a, 0), 0)]
        if x.dtype == torch.bool:
            return F.pad(x.to(torch.uint8), spec, value=float(value)).bool()
        return F.pad(x, spec, value=value) if any(spec) else x
    if mode not in ("edge", "reflect", "wrap"):
        raise ctx.unsupported(f"Pad mode {mode!r}")
    for a in range(r):
        b, e = max(before.get(a, 0), 0), max(after.get(a, 0), 0)
        if b or e:
            x = x.index_select(a, _pad_indices(x.shape[a], b, e, mode))
    return x


@register("DepthToSpace", since=1)
def depth_to_space(ctx: NodeContext, inp: list) -> Tensor:
    x, bs = inp[0], ctx.attr("blocksize")
    b, c, h, w = x.shape
    if ctx.attr("mode", "DCR") == "DCR":
        y = x.reshape(b, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(b, c // (bs * bs), bs, bs, h, w).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(b, c // (bs * bs), h * bs, w * bs)


@register("SpaceToDepth", since=1)
def space_to_depth(ctx: NodeContext, inp: list) -> Tensor:
    x, bs = inp[0], ctx.attr("blocksize")
    b, c, h, w = x.shape
    y = x.reshape(b, c, h // bs, bs, w // bs, bs)
    # DCR (default): block offsets before channels; CRD (opset 25 ``mode``): channels first
    y = y.permute(0, 3, 5, 1, 2, 4) if ctx.attr("mode", "DCR") == "DCR" else y.permute(0, 1, 3, 5, 2, 4)
    return y.reshape(b, c * bs * bs, h // bs, w // bs)
