"""Activation functions and (Log)Softmax/Hardmax.

Built-in torch functions (elu, celu, softplus, mish) are used where they exist
because a ``torch.where`` formulation computes both branches and back-propagates
``0 * inf = nan`` from the discarded one (e.g. exp of large inputs) -- exactly
the kind of spurious NaN gradient a gradient-diagnosis tool must not invent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import NodeContext, register
from ._util import norm_axis, prod

Tensor = torch.Tensor


@register("Relu", since=1)
def relu(ctx: NodeContext, inp: list) -> Tensor:
    return torch.relu(inp[0])


@register("Sigmoid", since=1)
def sigmoid(ctx: NodeContext, inp: list) -> Tensor:
    return torch.sigmoid(inp[0])


@register("Tanh", since=1)
def tanh(ctx: NodeContext, inp: list) -> Tensor:
    return torch.tanh(inp[0])


@register("LeakyRelu", since=1)
def leaky_relu(ctx: NodeContext, inp: list) -> Tensor:
    return F.leaky_relu(inp[0], ctx.attr("alpha", 0.01))


@register("Elu", since=1)
def elu(ctx: NodeContext, inp: list) -> Tensor:
    return F.elu(inp[0], ctx.attr("alpha", 1.0))


@register("Selu", since=1)
def selu(ctx: NodeContext, inp: list) -> Tensor:
    alpha = ctx.attr("alpha", 1.67326319217681884765625)
    gamma = ctx.attr("gamma", 1.05070102214813232421875)
    return gamma * F.elu(inp[0], alpha)


@register("Celu", since=12)
def celu(ctx: NodeContext, inp: list) -> Tensor:
    return F.celu(inp[0], ctx.attr("alpha", 1.0))


@register("Gelu", since=20)
def gelu(ctx: NodeContext, inp: list) -> Tensor:
    return F.gelu(inp[0], approximate=ctx.attr("approximate", "none"))


@register("Softplus", since=1)
def softplus(ctx: NodeContext, inp: list) -> Tensor:
    return F.softplus(inp[0])


@register("Softsign", since=1)
def softsign(ctx: NodeContext, inp: list) -> Tensor:
    return F.softsign(inp[0])


@register("Mish", since=18)
def mish(ctx: NodeContext, inp: list) -> Tensor:
    return F.mish(inp[0])


@register("Swish", since=24)
def swish(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    return x * torch.sigmoid(ctx.attr("alpha", 1.0) * x)


@register("HardSigmoid", since=1)
def hard_sigmoid(ctx: NodeContext, inp: list) -> Tensor:
    return torch.clamp(ctx.attr("alpha", 0.2) * inp[0] + ctx.attr("beta", 0.5), 0.0, 1.0)


@register("HardSwish", since=14)
def hard_swish(ctx: NodeContext, inp: list) -> Tensor:
    return F.hardswish(inp[0])


@register("PRelu", since=1)
def prelu(ctx: NodeContext, inp: list) -> Tensor:
    """Opset 7+: slope broadcasts numpy-style; before 7 a 1-D slope is per channel (dim 1)."""
    x, slope = inp
    if ctx.opset < 7 and slope.dim() == 1 and slope.numel() > 1 and x.dim() > 2:
        slope = slope.reshape((1, -1) + (1,) * (x.dim() - 2))
    return torch.where(x < 0, x * slope, x)


@register("ThresholdedRelu", since=10)
def thresholded_relu(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    return torch.where(x > ctx.attr("alpha", 1.0), x, torch.zeros_like(x))


@register("Shrink", since=9)
def shrink(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    lambd, bias = ctx.attr("lambd", 0.5), ctx.attr("bias", 0.0)
    zero = torch.zeros_like(x)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero)).to(x.dtype)


def _softmax_family(kind: str):
    def impl(ctx: NodeContext, inp: list) -> Tensor:
        x = inp[0]
        if ctx.opset < 13:
            # Pre-13 semantics: coerce to 2-D [prod(shape[:axis]), prod(shape[axis:])]
            axis = norm_axis(ctx.attr("axis", 1), x.dim()) if x.dim() else 0
            y = _apply(kind, x.reshape(prod(x.shape[:axis]), prod(x.shape[axis:])), 1)
            return y.reshape(x.shape)
        return _apply(kind, x, norm_axis(ctx.attr("axis", -1), x.dim()))

    return impl


def _apply(kind: str, x: Tensor, dim: int) -> Tensor:
    if kind == "Softmax":
        return torch.softmax(x, dim)
    if kind == "LogSoftmax":
        return torch.log_softmax(x, dim)
    idx = torch.argmax(x, dim, keepdim=True)  # Hardmax: first maximum wins
    return torch.zeros_like(x).scatter(dim, idx, 1.0)


for _k in ("Softmax", "LogSoftmax", "Hardmax"):
    register(_k, since=1)(_softmax_family(_k))
