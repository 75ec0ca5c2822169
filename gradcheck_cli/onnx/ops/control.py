"""Control flow: If, Loop, Scan.  Bodies are CompiledGraphs run with the outer scope visible.

Loops are unrolled eagerly, so gradients flow through every iteration like in
an eager torch loop.
"""

from __future__ import annotations

import torch

from ..registry import NodeContext, register

Tensor = torch.Tensor


@register("If", since=1)
def if_(ctx: NodeContext, inp: list) -> tuple:
    branch = "then_branch" if bool(inp[0].reshape(-1)[0]) else "else_branch"
    return ctx.run_subgraph(branch, [])


@register("Loop", since=1)
def loop(ctx: NodeContext, inp: list) -> tuple:
    """Inputs (M, cond, v...); body (i, cond, v...) -> (cond, v..., scan...); outputs (v..., stacked scan...)."""
    trip = int(inp[0].reshape(-1)[0]) if inp[0] is not None else None
    cond = bool(inp[1].reshape(-1)[0]) if len(inp) > 1 and inp[1] is not None else True
    carried = list(inp[2:])
    n_out = ctx.num_outputs
    scans: list[list[Tensor]] = [[] for _ in range(n_out - len(carried))]
    i = 0
    while (trip is None or i < trip) and cond:
        outs = ctx.run_subgraph("body", [torch.tensor(i, dtype=torch.int64), torch.tensor(cond), *carried])
        cond = bool(outs[0].reshape(-1)[0]) if outs[0] is not None else cond
        carried = list(outs[1:1 + len(carried)])
        for k, s in enumerate(outs[1 + len(carried):]):
            scans[k].append(s)
        i += 1
    stacked = [torch.stack(s) if s else torch.zeros(0) for s in scans]
    return (*carried, *stacked)


@register("Scan", since=9)
def scan(ctx: NodeContext, inp: list) -> tuple:
    n_scan = ctx.attr("num_scan_inputs")
    states = list(inp[: len(inp) - n_scan])
    xs = inp[len(inp) - n_scan:]
    in_axes = list(ctx.attr("scan_input_axes") or [0] * n_scan)
    in_dirs = list(ctx.attr("scan_input_directions") or [0] * n_scan)
    in_axes = [a + x.dim() if a < 0 else a for a, x in zip(in_axes, xs)]
    steps = xs[0].shape[in_axes[0]] if xs else 0
    n_scan_out = ctx.num_outputs - len(states)
    scans: list[list[Tensor]] = [[] for _ in range(n_scan_out)]
    for t in range(steps):
        slices = [x.select(a, steps - 1 - t if d else t) for x, a, d in zip(xs, in_axes, in_dirs)]
        outs = ctx.run_subgraph("body", [*states, *slices])
        states = list(outs[: len(states)])
        for k, s in enumerate(outs[len(states):]):
            scans[k].append(s)
    out_axes = list(ctx.attr("scan_output_axes") or [0] * n_scan_out)
    out_dirs = list(ctx.attr("scan_output_directions") or [0] * n_scan_out)
    results = []
    for s, a, d in zip(scans, out_axes, out_dirs):
        if d:
            s = s[::-1]
        r = s[0].dim() + 1
        results.append(torch.stack(s, a + r if a < 0 else a))
    return (*states, *results)
