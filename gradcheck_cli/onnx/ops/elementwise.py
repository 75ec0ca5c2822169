"""Element-wise arithmetic, math, comparison, logical and bitwise ops (numpy broadcasting).

torch follows the same multidirectional broadcasting rules as ONNX, so most ops
map 1:1.  The deliberate deviations from "just call torch" are the integer
semantics ONNX fixes differently from Python (Div truncates, Mod's ``fmod``)
and result dtypes (Pow keeps the base type).
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

from ..dtypes import FLOAT_DTYPES, to_torch_dtype
from ..registry import NodeContext, register
from ._util import scalar

Tensor = torch.Tensor
_WIDE_UINT = (torch.uint16, torch.uint32, torch.uint64)


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[NodeContext, list], Tensor]:
    """Wrap a binary torch op; compute wide unsigned types (poorly supported by torch) via int64."""

    def impl(ctx: NodeContext, inp: list) -> Tensor:
        a, b = inp[0], inp[1]
        if a.dtype in _WIDE_UINT or b.dtype in _WIDE_UINT:
            dt = a.dtype
            r = fn(a.to(torch.int64), b.to(torch.int64))
            return r.to(dt) if r.dtype != torch.bool else r
        return fn(a, b)

    return impl


register("Add", since=1)(_binary(torch.add))
register("Sub", since=1)(_binary(torch.sub))
register("Mul", since=1)(_binary(torch.mul))
register("Equal", since=1)(_binary(torch.eq))
register("Less", since=1)(_binary(torch.lt))
register("LessOrEqual", since=12)(_binary(torch.le))
register("Greater", since=1)(_binary(torch.gt))
register("GreaterOrEqual", since=12)(_binary(torch.ge))
register("And", since=1)(_binary(torch.logical_and))
register("Or", since=1)(_binary(torch.logical_or))
register("Xor", since=1)(_binary(torch.logical_xor))
register("BitwiseAnd", since=18)(_binary(torch.bitwise_and))
register("BitwiseOr", since=18)(_binary(torch.bitwise_or))
register("BitwiseXor", since=18)(_binary(torch.bitwise_xor))


def _div(a: Tensor, b: Tensor) -> Tensor:
    if a.dtype.is_floating_point or a.dtype.is_complex:
        return torch.div(a, b)
    return torch.div(a, b, rounding_mode="trunc")  # C-style integer division, as onnxruntime


register("Div", since=1)(_binary(_div))


@register("Pow", since=1)
def pow_(ctx: NodeContext, inp: list) -> Tensor:
    """Result has the base's type (Pow(int32, float) is int32 in ONNX)."""
    a, b = inp
    if b.dtype in _WIDE_UINT:  # torch's pow backward has no kernels for them
        b = b.to(torch.int64)
    if a.dtype in FLOAT_DTYPES and b.dtype in FLOAT_DTYPES and b.dtype != a.dtype:
        b = b.to(a.dtype) if b.dim() > 0 else b
    r = torch.pow(a, b)
    return r if r.dtype == a.dtype else r.to(a.dtype)


@register("Mod", since=10)
def mod(ctx: NodeContext, inp: list) -> Tensor:
    """fmod=1: sign of dividend (C fmod); fmod=0: sign of divisor (Python %)."""
    fn = torch.fmod if ctx.attr("fmod", 0) else torch.remainder
    return _binary(fn)(ctx, inp)


@register("BitShift", since=11)
def bitshift(ctx: NodeContext, inp: list) -> Tensor:
    fn = torch.bitwise_left_shift if ctx.attr("direction") == "LEFT" else torch.bitwise_right_shift
    a, b = inp
    dt = a.dtype
    r = fn(a.to(torch.int64), b.to(torch.int64))
    if ctx.attr("direction") == "LEFT" and dt in (torch.uint8, torch.uint16, torch.uint32):
        r = r & ((1 << (8 * dt.itemsize)) - 1)
    return r.to(dt)


def _identity(x: Tensor) -> Tensor:
    return x


def _unary(fn: Callable[[Tensor], Tensor]) -> Callable[[NodeContext, list], Tensor]:
    def impl(ctx: NodeContext, inp: list) -> Tensor:
        x = inp[0]
        if x.dtype in _WIDE_UINT:  # two's complement makes int64 round-trips exact (BitwiseNot, Abs, ...)
            r = fn(x.to(torch.int64))
            return r.to(x.dtype) if r.dtype != torch.bool else r
        return fn(x)

    return impl


_UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    "Neg": torch.neg,
    "Abs": torch.abs,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": torch.sqrt,
    "Reciprocal": torch.reciprocal,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Tan": torch.tan,
    "Asin": torch.asin,
    "Acos": torch.acos,
    "Atan": torch.atan,
    "Sinh": torch.sinh,
    "Cosh": torch.cosh,
    "Asinh": torch.asinh,
    "Acosh": torch.acosh,
    "Atanh": torch.atanh,
    "Erf": torch.erf,
    "Sign": torch.sign,
    "Round": torch.round,  # half to even, as ONNX
    "Not": torch.logical_not,
    "IsNaN": torch.isnan,
    "BitwiseNot": torch.bitwise_not,
    "Identity": _identity,
}
for _name, _fn in _UNARY.items():
    register(_name, since=1)(_unary(_fn))


@register("IsInf", since=10)
def isinf(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    neg, pos = ctx.attr("detect_negative", 1), ctx.attr("detect_positive", 1)
    r = torch.zeros_like(x, dtype=torch.bool)
    if pos:
        r = r | torch.isposinf(x)
    if neg:
        r = r | torch.isneginf(x)
    return r


def _variadic(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[NodeContext, list], Tensor]:
    def impl(ctx: NodeContext, inp: list) -> Tensor:
        xs = [t for t in inp if t is not None]
        if xs[0].dtype in _WIDE_UINT:
            return functools.reduce(fn, [t.to(torch.int64) for t in xs]).to(xs[0].dtype)
        return functools.reduce(fn, xs)

    return impl


register("Sum", since=1)(_variadic(torch.add))
register("Max", since=1)(_variadic(torch.maximum))
register("Min", since=1)(_variadic(torch.minimum))


@register("Mean", since=1)
def mean(ctx: NodeContext, inp: list) -> Tensor:
    xs = [t for t in inp if t is not None]
    return functools.reduce(torch.add, xs) / len(xs)


@register("Where", since=9)
def where(ctx: NodeContext, inp: list) -> Tensor:
    return torch.where(inp[0].bool(), inp[1], inp[2])


@register("Clip", since=1)
def clip(ctx: NodeContext, inp: list) -> Tensor:
    """Opset < 11: min/max attributes; >= 11: optional min/max inputs."""
    x = inp[0]
    if ctx.opset < 11:
        lo, hi = ctx.attr("min"), ctx.attr("max")
        return torch.clamp(x, min=lo, max=hi) if lo is not None or hi is not None else x
    lo = inp[1] if len(inp) > 1 else None
    hi = inp[2] if len(inp) > 2 else None
    if lo is None and hi is None:
        return x
    # scalar bounds as Python numbers keep the result dtype (and avoid promotion surprises)
    lo_v = scalar(lo) if lo is not None else None
    hi_v = scalar(hi) if hi is not None else None
    if x.dtype in _WIDE_UINT:
        return torch.clamp(x.to(torch.int64), min=lo_v, max=hi_v).to(x.dtype)
    return torch.clamp(x, min=lo_v, max=hi_v)


@register("Cast", since=1)
def cast(ctx: NodeContext, inp: list) -> Tensor:
    to = ctx.attr("to")
    if isinstance(to, str):  # opset 1 used a string
        import onnx

        to = onnx.TensorProto.DataType.Value(to)
    return inp[0].to(to_torch_dtype(to))


@register("CastLike", since=15)
def cast_like(ctx: NodeContext, inp: list) -> Tensor:
    return inp[0].to(inp[1].dtype)
