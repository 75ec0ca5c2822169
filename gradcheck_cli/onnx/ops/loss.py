"""Training-graph ops: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

Exports that include the loss (e.g. ``torch.onnx`` of a model returning
``F.cross_entropy``) contain these; gradients of the loss are then exactly what
a training step would see.
"""

from __future__ import annotations

from typing import Optional

import torch

from ..registry import NodeContext, register

Tensor = torch.Tensor


def _nll(logp: Tensor, target: Tensor, weight: Optional[Tensor], reduction: str, ignore: Optional[int]) -> Tensor:
    """Reference semantics: weights gathered per target, ignored targets weigh 0, 'mean' divides
    by the summed weights when there are weights or an ignore_index, by the count otherwise."""
    t = target.long()
    mask = (t != ignore) if ignore is not None else torch.ones_like(t, dtype=torch.bool)
    t_safe = torch.where(mask, t, torch.zeros_like(t))
    picked = -torch.gather(logp, 1, t_safe.unsqueeze(1)).squeeze(1)
    picked = torch.where(mask, picked, torch.zeros_like(picked))
    w: Optional[Tensor] = None
    if weight is not None:
        w = weight[t_safe] * mask.to(weight.dtype)
    elif ignore is not None:
        w = mask.to(logp.dtype)
    loss = picked * w if w is not None else picked
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if w is not None:
        return loss.sum() / w.sum()
    return loss.mean()


@register("NegativeLogLikelihoodLoss", since=12)
def nll_loss(ctx: NodeContext, inp: list) -> Tensor:
    weight = inp[2] if len(inp) > 2 else None
    return _nll(inp[0], inp[1], weight, ctx.attr("reduction", "mean"), ctx.attr("ignore_index"))


@register("SoftmaxCrossEntropyLoss", since=12)
def softmax_cross_entropy(ctx: NodeContext, inp: list) -> tuple:
    logp = torch.log_softmax(inp[0], 1)
    weight = inp[2] if len(inp) > 2 else None
    loss = _nll(logp, inp[1], weight, ctx.attr("reduction", "mean"), ctx.attr("ignore_index"))
    return loss, logp
