"""Recurrent layers: LSTM, GRU, RNN, unrolled step by step with torch ops.

ONNX gate order differs from torch (LSTM: i, o, f, c vs torch i, f, g, o;
GRU: z, r, h vs torch r, z, n), and ONNX adds peepholes, clipping, custom
activations and ``linear_before_reset``, so we unroll the recurrence
explicitly instead of calling torch's fused kernels.  Unrolling keeps every
step differentiable, which is what gradient diagnosis needs.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..registry import NodeContext, register

Tensor = torch.Tensor
Act = Callable[[Tensor], Tensor]


def _activation(name: str, alpha: Optional[float], beta: Optional[float]) -> Act:
    n = name.lower()
    if n == "sigmoid":
        return torch.sigmoid
    if n == "tanh":
        return torch.tanh
    if n == "relu":
        return torch.relu
    if n == "affine":
        return lambda x: (alpha if alpha is not None else 1.0) * x + (beta or 0.0)
    if n == "leakyrelu":
        return lambda x: F.leaky_relu(x, alpha if alpha is not None else 0.01)
    if n == "thresholdedrelu":
        a = alpha if alpha is not None else 1.0
        return lambda x: torch.where(x > a, x, torch.zeros_like(x))
    if n == "scaledtanh":
        return lambda x: (alpha if alpha is not None else 1.0) * torch.tanh((beta if beta is not None else 1.0) * x)
    if n == "hardsigmoid":
        a, b = (alpha if alpha is not None else 0.2), (beta if beta is not None else 0.5)
        return lambda x: torch.clamp(a * x + b, 0, 1)
    if n == "elu":
        return lambda x: F.elu(x, alpha if alpha is not None else 1.0)
    if n == "softsign":
        return F.softsign
    if n == "softplus":
        return F.softplus
    raise ValueError(f"unknown RNN activation {name!r}")


def _activations(ctx: NodeContext, defaults: list[str], num_dirs: int) -> list[list[Act]]:
    names = ctx.attr("activations") or defaults * num_dirs
    alphas = list(ctx.attr("activation_alpha") or [])
    betas = list(ctx.attr("activation_beta") or [])
    fns: list[Act] = []
    for i, nm in enumerate(names):
        fns.append(_activation(nm, alphas[i] if i < len(alphas) else None, betas[i] if i < len(betas) else None))
    k = len(defaults)
    if len(fns) == k and num_dirs == 2:
        fns = fns * 2
    return [fns[d * k:(d + 1) * k] for d in range(num_dirs)]


def _setup(ctx: NodeContext, inp: list, gates: int):
    """Common input handling; returns (X[seq,batch,in], W, R, B or None, h0, layout, dirs, H)."""
    x, w, r = inp[0], inp[1], inp[2]
    b = inp[3] if len(inp) > 3 else None
    seq_lens = inp[4] if len(inp) > 4 else None
    h0 = inp[5] if len(inp) > 5 else None
    layout = ctx.attr("layout", 0)
    if layout:
        x = x.transpose(0, 1)
        h0 = h0.transpose(0, 1) if h0 is not None else None
    lens = None
    if seq_lens is not None and bool((seq_lens != x.shape[0]).any()):
        lens = seq_lens.long()
    direction = ctx.attr("direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    hidden = ctx.attr("hidden_size") or r.shape[-1]
    if h0 is None:
        h0 = torch.zeros(dirs, x.shape[1], hidden, dtype=x.dtype)
    return x, w, r, b, h0, layout, direction, dirs, hidden, lens


def _clip(ctx: NodeContext) -> Callable[[Tensor], Tensor]:
    c = ctx.attr("clip")
    return (lambda t: t.clamp(-c, c)) if c is not None else (lambda t: t)


def _finish(ys: list[Tensor], finals: list[list[Tensor]], layout: int) -> tuple:
    """Stack per-direction outputs into ONNX's Y [seq, dirs, batch, H] and state tensors."""
    y = torch.stack(ys, 1)
    states = [torch.stack(s, 0) for s in finals]
    if layout:
        y = y.permute(2, 0, 1, 3)
        states = [s.transpose(0, 1) for s in states]
    return (y, *states)


def _run_dirs(direction: str, dirs: int, seq: int, step, init: list[tuple[Tensor, ...]],
              lens: Optional[Tensor]) -> tuple[list[Tensor], list[list[Tensor]]]:
    """Run ``step(d, t, state) -> state`` over time for each direction.

    With ``sequence_lens``, batch entries past their length keep their state and
    output zeros; a reverse pass then starts at each entry's own last step, which
    is exactly ONNX's variable-length semantics."""
    ys: list[Tensor] = []
    finals: list[list[Tensor]] = []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        order = range(seq - 1, -1, -1) if reverse else range(seq)
        outs: list[Optional[Tensor]] = [None] * seq
        state = init[d]
        for t in order:
            new = step(d, t, state)
            if lens is None:
                state = new
                outs[t] = new[0]
            else:
                live = (t < lens).reshape(-1, 1)
                state = tuple(torch.where(live, a, b) for a, b in zip(new, state))
                outs[t] = torch.where(live, new[0], torch.zeros_like(new[0]))
        ys.append(torch.stack(outs, 0) if seq else torch.zeros(0))  # type: ignore[arg-type]
        finals.append(list(state))
    # regroup finals per state kind
    kinds = len(finals[0])
    return ys, [[finals[d][k] for d in range(dirs)] for k in range(kinds)]


@register("LSTM", since=7)
def lstm(ctx: NodeContext, inp: list) -> tuple:
    x, w, r, b, h0, layout, direction, dirs, hid, lens = _setup(ctx, inp, 4)
    c0 = inp[6] if len(inp) > 6 and inp[6] is not None else None
    if c0 is not None and layout:
        c0 = c0.transpose(0, 1)
    if c0 is None:
        c0 = torch.zeros_like(h0)
    p = inp[7] if len(inp) > 7 else None
    acts = _activations(ctx, ["Sigmoid", "Tanh", "Tanh"], dirs)
    clip = _clip(ctx)
    couple = bool(ctx.attr("input_forget", 0))
    # input projection for all time steps at once (one matmul per direction)
    xw = [x @ w[d].T + (b[d, :4 * hid] + b[d, 4 * hid:] if b is not None else 0) for d in range(dirs)]

    def step(d: int, t: int, state):
        h, c = state
        f_, g_, h_ = acts[d]
        gates = xw[d][t] + h @ r[d].T
        gi, go, gf, gc = gates.chunk(4, -1)
        if p is not None:
            pi, po, pf = p[d].chunk(3)
            gi, gf = gi + pi * c, gf + pf * c
        i = f_(clip(gi))
        f = 1 - i if couple else f_(clip(gf))
        c_new = f * c + i * g_(clip(gc))
        if p is not None:
            go = go + po * c_new
        o = f_(clip(go))
        return o * h_(c_new), c_new

    ys, finals = _run_dirs(direction, dirs, x.shape[0], step, [(h0[d], c0[d]) for d in range(dirs)], lens)
    return _finish(ys, finals, layout)


@register("GRU", since=7)
def gru(ctx: NodeContext, inp: list) -> tuple:
    x, w, r, b, h0, layout, direction, dirs, hid, lens = _setup(ctx, inp, 3)
    acts = _activations(ctx, ["Sigmoid", "Tanh"], dirs)
    clip = _clip(ctx)
    lbr = bool(ctx.attr("linear_before_reset", 0))
    xw = [x @ w[d].T + (b[d, :3 * hid] if b is not None else 0) for d in range(dirs)]

    def step(d: int, t: int, state):
        h = state[0]
        f_, g_ = acts[d]
        rz, rr, rh = r[d].chunk(3, 0)
        bz, br, bh = (b[d, 3 * hid:].chunk(3) if b is not None else (0, 0, 0))
        xz, xr, xh = xw[d][t].chunk(3, -1)
        z = f_(clip(xz + h @ rz.T + bz))
        rg = f_(clip(xr + h @ rr.T + br))
        if lbr:
            hh = g_(clip(xh + rg * (h @ rh.T + bh)))
        else:
            hh = g_(clip(xh + (rg * h) @ rh.T + bh))
        return ((1 - z) * hh + z * h,)

    ys, finals = _run_dirs(direction, dirs, x.shape[0], step, [(h0[d],) for d in range(dirs)], lens)
    return _finish(ys, finals, layout)


@register("RNN", since=7)
def rnn(ctx: NodeContext, inp: list) -> tuple:
    x, w, r, b, h0, layout, direction, dirs, hid, lens = _setup(ctx, inp, 1)
    acts = _activations(ctx, ["Tanh"], dirs)
    clip = _clip(ctx)
    xw = [x @ w[d].T + (b[d, :hid] + b[d, hid:] if b is not None else 0) for d in range(dirs)]

    def step(d: int, t: int, state):
        h = state[0]
        return (acts[d][0](clip(xw[d][t] + h @ r[d].T)),)

    ys, finals = _run_dirs(direction, dirs, x.shape[0], step, [(h0[d],) for d in range(dirs)], lens)
    return _finish(ys, finals, layout)
