"""Attention (opset 23+), a port of the ONNX reference semantics to differentiable torch.

The dynamo exporter emits this op for ``scaled_dot_product_attention`` from
opset 23, so transformer exports hit it.  Supported: 3-D (heads packed in the
hidden dim) and 4-D inputs, boolean/additive masks (padded to the KV length),
causal masking aligned to the past-cache offset, sliding windows, KV cache
(past/present), ``nonpad_kv_seqlen``, grouped-query heads, ``softcap``,
``softmax_precision`` and every ``qk_matmul_output_mode``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..dtypes import to_torch_dtype
from ..registry import NodeContext, register

Tensor = torch.Tensor


def _heads(x: Tensor, n: int) -> Tensor:
    b, s, h = x.shape
    return x.reshape(b, s, n, h // n).transpose(1, 2)


def _allowed_bias(allowed: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.where(allowed, torch.zeros((), dtype=dtype), torch.full((), float("-inf"), dtype=dtype))


def _offset_diff(q_len: int, kv_len: int, offset: int | Tensor) -> Tensor:
    """(query absolute position) - (key position): [q, kv] or [batch, 1, q, kv] for per-batch offsets."""
    i = torch.arange(q_len).reshape(q_len, 1)
    j = torch.arange(kv_len).reshape(1, kv_len)
    if isinstance(offset, Tensor):
        return (i + offset.reshape(-1, 1, 1, 1)) - j
    return (i + offset) - j


def _safe_softmax(x: Tensor) -> Tensor:
    """Softmax whose fully -inf rows give 0 instead of NaN (reference behaviour)."""
    m = x.detach().amax(-1, keepdim=True)
    dead = torch.isneginf(m)
    if not bool(dead.any()):
        return torch.softmax(x, -1)
    e = torch.exp(x - torch.where(dead, torch.zeros_like(m), m))
    s = e.sum(-1, keepdim=True)
    return e / torch.where(s == 0, torch.ones_like(s), s)


@register("Attention", since=23)
def attention(ctx: NodeContext, inp: list) -> tuple:
    q, k, v = inp[0], inp[1], inp[2]
    get = lambda i: inp[i] if len(inp) > i else None  # noqa: E731
    mask, past_k, past_v, nonpad = get(3), get(4), get(5), get(6)
    rank3 = q.dim() == 3
    qh, kvh = ctx.attr("q_num_heads"), ctx.attr("kv_num_heads")
    if rank3:
        q, k, v = _heads(q, qh), _heads(k, kvh), _heads(v, kvh)
    scale = ctx.attr("scale")
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[3])
    s = math.sqrt(scale)  # applied to Q and K separately, as the reference (keeps fp16 in range)
    if past_k is not None and past_v is not None:
        k = torch.cat([past_k, k], 2)
        v = torch.cat([past_v, v], 2)
    present_k, present_v = k, v
    q_len, kv_len = q.shape[2], k.shape[2]
    dt = q.dtype
    bias: Tensor = torch.zeros((q_len, kv_len), dtype=dt)
    if mask is not None and mask.shape[-1] < kv_len:
        pad_val = False if mask.dtype == torch.bool else float("-inf")
        mask = F.pad(mask, (0, kv_len - mask.shape[-1]), value=pad_val)
    if mask is not None:
        mask = _allowed_bias(mask, dt) if mask.dtype == torch.bool else mask
    if past_k is None and nonpad is not None:
        offset: int | Tensor = nonpad.long().reshape(-1) - q_len
    else:
        offset = past_k.shape[2] if past_k is not None else 0
    if ctx.attr("is_causal", 0):
        base = bias if mask is None else mask
        bias = base + _allowed_bias(_offset_diff(q_len, kv_len, offset) >= 0, dt)
    elif mask is not None:
        bias = bias + mask
    left, right = ctx.attr("left_window_size", -1), ctx.attr("right_window_size", -1)
    if left >= 0 or right >= 0:
        diff = _offset_diff(q_len, kv_len, offset)
        ok = torch.ones_like(diff, dtype=torch.bool)
        if left >= 0:
            ok &= diff <= left
        if right >= 0:
            ok &= -diff <= right
        bias = bias + _allowed_bias(ok, dt)
    if nonpad is not None:
        keep = torch.arange(kv_len).reshape(1, kv_len) < nonpad.long().reshape(-1, 1)
        bias = bias + _allowed_bias(keep.reshape(-1, 1, 1, kv_len), dt)
    nq, nk = q.shape[1], k.shape[1]
    if nq != nk and nq % nk == 0:  # grouped-query attention
        k = k.repeat_interleave(nq // nk, 1)
        v = v.repeat_interleave(nq // nk, 1)
    qk = torch.matmul(q * s, k.transpose(2, 3) * s)
    softcap = ctx.attr("softcap", 0.0)
    if softcap and softcap > 0:
        qk = torch.tanh(qk / softcap) * softcap
    mode = ctx.attr("qk_matmul_output_mode", 0)
    qk_out: Optional[Tensor] = qk
    scores = qk + bias
    if mode == 2:
        qk_out = scores
    sp = ctx.attr("softmax_precision")
    if sp is not None:
        scores = scores.to(to_torch_dtype(sp))
    probs = _safe_softmax(scores)
    dead = torch.isneginf(bias.amax(-1, keepdim=True))
    if bool(dead.any()):
        probs = torch.where(dead, torch.zeros((), dtype=probs.dtype), probs)
    if mode == 3:
        qk_out = probs
    probs = probs.to(dt)
    y = torch.matmul(probs, v)
    if rank3:
        y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], -1)
    return y, present_k, present_v, (qk_out.to(dt) if qk_out is not None else None)
