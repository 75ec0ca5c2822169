"""Random generators (RandomNormal/Uniform[Like], Bernoulli, Multinomial) with torch's RNG.

They appear in exported graphs that sample noise in ``forward`` (VAE
reparameterisation, noise injection).  The ``seed`` attribute seeds a private
generator, so runs are reproducible, but the streams differ from other
runtimes' -- only shapes, dtypes and distributions match.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..dtypes import to_torch_dtype
from ..registry import NodeContext, register

Tensor = torch.Tensor


def _generator(ctx: NodeContext, device: torch.device) -> Optional[torch.Generator]:
    seed = ctx.attr("seed")
    return None if seed is None else torch.Generator(device).manual_seed(int(seed))


def _dtype(ctx: NodeContext, like: Optional[Tensor]) -> torch.dtype:
    dt = ctx.attr("dtype")
    if dt is not None:
        return to_torch_dtype(dt)
    return like.dtype if like is not None else torch.float32


def _normal(ctx: NodeContext, shape: list[int], like: Optional[Tensor]) -> Tensor:
    dev = like.device if like is not None else torch.get_default_device()
    z = torch.randn(shape, generator=_generator(ctx, dev), device=dev, dtype=torch.float32)
    return (z * ctx.attr("scale", 1.0) + ctx.attr("mean", 0.0)).to(_dtype(ctx, like))


def _uniform(ctx: NodeContext, shape: list[int], like: Optional[Tensor]) -> Tensor:
    dev = like.device if like is not None else torch.get_default_device()
    u = torch.rand(shape, generator=_generator(ctx, dev), device=dev, dtype=torch.float32)
    low, high = ctx.attr("low", 0.0), ctx.attr("high", 1.0)
    return (u * (high - low) + low).to(_dtype(ctx, like))


register("RandomNormal", since=1)(lambda ctx, inp: _normal(ctx, list(ctx.attr("shape")), None))
register("RandomUniform", since=1)(lambda ctx, inp: _uniform(ctx, list(ctx.attr("shape")), None))
register("RandomNormalLike", since=1)(lambda ctx, inp: _normal(ctx, list(inp[0].shape), inp[0]))
register("RandomUniformLike", since=1)(lambda ctx, inp: _uniform(ctx, list(inp[0].shape), inp[0]))


@register("Bernoulli", since=15)
def bernoulli(ctx: NodeContext, inp: list) -> Tensor:
    p = inp[0]
    sample = torch.bernoulli(p.detach().float(), generator=_generator(ctx, p.device))
    return sample.to(_dtype(ctx, p))


@register("Multinomial", since=7)
def multinomial(ctx: NodeContext, inp: list) -> Tensor:
    """Input holds unnormalised log-probabilities [batch, classes]; output int32 (default) samples."""
    logits = inp[0].detach().float()
    probs = torch.softmax(logits, -1)
    out = torch.multinomial(probs, ctx.attr("sample_size", 1), replacement=True,
                            generator=_generator(ctx, logits.device))
    dt = ctx.attr("dtype")
    return out.to(to_torch_dtype(dt) if dt is not None else torch.int32)
