"""Reductions (ReduceX, ArgMax/ArgMin, TopK, CumSum/CumProd).

Axes moved from attribute to input at opset 13 for ReduceSum and 18 for the
other ReduceX ops; ``noop_with_empty_axes`` came with the input form.
Reductions over empty sets return the ONNX identity element (torch raises for
amax/amin on empty dims).
"""

from __future__ import annotations

import torch

from ..registry import NodeContext, register
from ._util import ints, norm_axes, norm_axis, scalar

Tensor = torch.Tensor

_INPUT_AXES_SINCE = {"ReduceSum": 13}


def _reduce_axes(ctx: NodeContext, inp: list, op: str) -> list[int] | None:
    """Normalised axes to reduce, or None meaning 'identity' (noop_with_empty_axes)."""
    x = inp[0]
    if ctx.opset >= _INPUT_AXES_SINCE.get(op, 18):
        axes = ints(inp[1]) if len(inp) > 1 and inp[1] is not None else []
    else:
        axes = list(ctx.attr("axes") or [])
    if not axes:
        if ctx.attr("noop_with_empty_axes", 0):
            return None
        return list(range(x.dim()))
    return sorted(set(norm_axes(axes, x.dim())))


def _extreme(x: Tensor, axes: list[int], keep: bool, is_max: bool) -> Tensor:
    if x.dtype == torch.bool:
        r = x
        for a in sorted(axes, reverse=True):
            r = r.any(a, keepdim=keep) if is_max else r.all(a, keepdim=keep)
        return r
    if any(x.shape[a] == 0 for a in axes):
        shape = [1 if i in axes else d for i, d in enumerate(x.shape)] if keep else [
            d for i, d in enumerate(x.shape) if i not in axes]
        if x.dtype.is_floating_point:
            fill = float("-inf") if is_max else float("inf")
        else:
            info = torch.iinfo(x.dtype)
            fill = info.min if is_max else info.max
        return torch.full(shape, fill, dtype=x.dtype)
    if not axes:
        return x
    return torch.amax(x, axes, keepdim=keep) if is_max else torch.amin(x, axes, keepdim=keep)


def _reduce(op: str, x: Tensor, axes: list[int], keep: bool) -> Tensor:
    dt = x.dtype
    if op == "ReduceMax":
        return _extreme(x, axes, keep, True)
    if op == "ReduceMin":
        return _extreme(x, axes, keep, False)
    if not axes:  # rank-0 input: every reduction is the identity (ReduceSumSquare etc. still apply)
        axes_arg: list[int] | None = None
    else:
        axes_arg = axes
    if op == "ReduceSum":
        r = torch.sum(x, axes_arg, keepdim=keep) if axes_arg else x
    elif op == "ReduceMean":
        xf = x if dt.is_floating_point else x.double()
        r = torch.mean(xf, axes_arg, keepdim=keep) if axes_arg else xf
    elif op == "ReduceProd":
        r = x
        for a in sorted(axes, reverse=True):
            r = torch.prod(r, a, keepdim=keep)
    elif op == "ReduceL1":
        r = torch.sum(x.abs(), axes_arg, keepdim=keep) if axes_arg else x.abs()
    elif op == "ReduceL2":
        xf = x if dt.is_floating_point else x.double()
        # vector_norm has a zero sub-gradient at 0 (sqrt(sum x^2) would give NaN), like torch.norm
        r = torch.linalg.vector_norm(xf, 2, axes_arg, keepdim=keep)
    elif op == "ReduceSumSquare":
        r = torch.sum(x * x, axes_arg, keepdim=keep) if axes_arg else x * x
    elif op == "ReduceLogSum":
        r = torch.log(torch.sum(x, axes_arg, keepdim=keep) if axes_arg else x)
    elif op == "ReduceLogSumExp":
        r = torch.logsumexp(x, axes if axes else [], keepdim=keep) if axes else x
    else:  # pragma: no cover - registry guarantees the op names
        raise AssertionError(op)
    return r if r.dtype == dt else r.to(dt)


def _make_reduce(op: str):
    def impl(ctx: NodeContext, inp: list) -> Tensor:
        axes = _reduce_axes(ctx, inp, op)
        if axes is None:
            return inp[0]
        return _reduce(op, inp[0], axes, bool(ctx.attr("keepdims", 1)))

    return impl


for _op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"):
    register(_op, since=1)(_make_reduce(_op))


def _arg(is_max: bool):
    def impl(ctx: NodeContext, inp: list) -> Tensor:
        x = inp[0]
        axis = norm_axis(ctx.attr("axis", 0), x.dim())
        keep = bool(ctx.attr("keepdims", 1))
        fn = torch.argmax if is_max else torch.argmin
        if ctx.attr("select_last_index", 0):
            r = x.shape[axis] - 1 - fn(x.flip(axis), axis, keepdim=keep)
        else:
            r = fn(x, axis, keepdim=keep)
        return r

    return impl


register("ArgMax", since=1)(_arg(True))
register("ArgMin", since=1)(_arg(False))


@register("TopK", since=10)
def topk(ctx: NodeContext, inp: list) -> tuple[Tensor, Tensor]:
    """Stable sort so that equal values keep the lower index first, as ONNX requires."""
    x, k = inp[0], int(scalar(inp[1]))
    axis = norm_axis(ctx.attr("axis", -1), x.dim())
    largest = bool(ctx.attr("largest", 1))
    key = x.detach()
    if key.dtype in (torch.uint16, torch.uint32, torch.uint64):  # torch cannot sort these
        key = key.to(torch.int64)
    _, idx = torch.sort(key, dim=axis, descending=largest, stable=True)
    idx = idx.narrow(axis, 0, k)
    signed = {torch.uint16: torch.int16, torch.uint32: torch.int32, torch.uint64: torch.int64}.get(x.dtype)
    if signed is not None:  # gather lacks wide unsigned kernels: gather the same bits as signed
        return torch.gather(x.view(signed), axis, idx).view(x.dtype), idx
    return torch.gather(x, axis, idx), idx


def _cum(prod_: bool):
    def impl(ctx: NodeContext, inp: list) -> Tensor:
        x = inp[0]
        axis = norm_axis(int(scalar(inp[1])), x.dim())
        rev, excl = ctx.attr("reverse", 0), ctx.attr("exclusive", 0)
        y = x.flip(axis) if rev else x
        if excl:
            ident = torch.ones_like if prod_ else torch.zeros_like
            y = torch.cat([ident(y.narrow(axis, 0, 1)), y.narrow(axis, 0, y.shape[axis] - 1)], axis)
        y = torch.cumprod(y, axis) if prod_ else torch.cumsum(y, axis)
        y = y.flip(axis) if rev else y
        return y.to(x.dtype)

    return impl


register("CumSum", since=11)(_cum(False))
register("CumProd", since=26)(_cum(True))
