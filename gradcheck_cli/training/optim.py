"""The optimiser of a training run, and the size of the step it took: |delta W| per parameter.

The update/weight ratio needs ``W_before - W_after``. Keeping a copy of every weight on each logged
step would cost one more model's worth of memory at the peak of the step (where the optimiser's own
moment buffers and temporaries already sit), so for torch's SGD, Adam and AdamW the step is
recomputed *after* it was taken, exactly, from the state the optimiser keeps: Adam's update is
``lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)`` with the moments it just stored; SGD's is ``lr`` x
its momentum buffer, or ``lr`` x the gradient; decoupled and L2 weight decay are undone from the new
weight. One parameter's temporaries exist at a time, and a large tensor is recomputed at a seeded
sample of its elements (:meth:`UpdateMeter.squares`). Any other optimiser gets the copy, taken by a
step pre-hook on logged steps only. ``tests/training/test_optim_updates.py`` checks every formula
against the copy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Any

import torch

from gradcheck_cli.measure.reductions import squares_of
from gradcheck_cli.training.options import TrainOptions

_TINY = {dtype: torch.finfo(dtype).tiny for dtype in (torch.bfloat16, torch.float32, torch.float64)}
"""The smallest normal value of the float dtypes whose square root of it (1e-19 and below) is negligible
beside any eps (see :func:`_exact_delta`); not float16's (6.1e-5: its root, 7.8e-3, would swamp the step)."""

SAMPLED = 1 << 14
"""Tensors above this many elements get their update recomputed at this many sampled elements."""


def make_optimizer(params: Iterable[torch.nn.Parameter], options: TrainOptions) -> torch.optim.Optimizer:
    kwargs: dict[str, Any] = {"lr": options.rate}
    if options.weight_decay is not None:
        kwargs["weight_decay"] = options.weight_decay
    if options.optimizer == "sgd":
        return torch.optim.SGD(params, momentum=options.momentum, **kwargs)
    if options.optimizer == "adam":
        return torch.optim.Adam(params, **kwargs)
    return torch.optim.AdamW(params, **kwargs)


def weight_decay_of(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0].get("weight_decay", 0.0))


class UpdateMeter:
    """|delta W|^2 of each parameter after ``optimizer.step()``, for the steps it is armed on."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.exact = type(optimizer) in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW) and not any(
            group.get("differentiable") for group in optimizer.param_groups)
        self.armed = False
        self._before: dict[int, torch.Tensor] = {}
        self._handle = None if self.exact else optimizer.register_step_pre_hook(self._snapshot)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _snapshot(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.armed:
            self._before = {id(p): p.detach().clone() for group in optimizer.param_groups for p in group["params"]}

    def squares(self, params: list[torch.Tensor]) -> list[float | None]:
        """Per parameter, |delta W|^2 of the step just taken (None: not stepped), read back in one transfer.

        Recomputing Adam's step in full costs about what the step itself did, and after the step the
        optimiser's state is cold: the cost is memory traffic. So a tensor above :data:`SAMPLED` elements
        is recomputed on a systematic sample of whole cache lines (:func:`_lines`: every k-th run of 64
        contiguous bytes from a seeded offset, a strided view, no gather) and scaled by numel / sample.
        The element-strided sample it replaces (every 4th element of a 512x512 weight) touched every
        cache line, so it read as much memory as the full tensor: the 30-layer MLP's 31 weights took
        20-24 ms after an AdamW step, against 5.3 ms now (benchmarks/HISTORY.md, sixth round). Measured
        error of the estimate: <= 0.25% for Adam/AdamW on dense layers whose units all get gradient (2%
        on an embedding whose batch uses 300 of 8000 rows), <= 1.8% for SGD (7% on that embedding); on
        the 30-layer MLP at its default init, whose units' gradients mostly vanish, median 0.8% and
        worst 4.9% for AdamW over 150 weight-steps; tested within 2% for Adam, AdamW and Nesterov SGD.
        The update ratio is judged in decades, so this is ample."""
        groups = {id(p): group for group in self.optimizer.param_groups for p in group["params"]}
        found: list[tuple[int, torch.Tensor, float]] = []  # position, device scalar, host factor
        with torch.no_grad():
            for i, p in enumerate(params):
                group = groups.get(id(p))
                if group is None:
                    continue
                if self.exact:
                    lines = _lines(p)
                    taken = _exact_delta(self.optimizer, group, p, lines)
                    if taken is not None:
                        squares, factor = taken
                        sampled = p.numel() if lines is None else lines[2] * lines[3]
                        found.append((i, squares, factor * p.numel() / sampled))
                else:
                    before = self._before.get(id(p))
                    if before is not None:
                        found.append((i, squares_of(p.detach() - before), 1.0))
        self._before = {}
        out: list[float | None] = [None] * len(params)
        if found:
            values = torch.stack([squares.float() for _, squares, _ in found]).cpu().tolist()
            for (i, _, factor), value in zip(found, values):
                out[i] = value * factor
        return out


def _lines(p: torch.Tensor) -> tuple[int, int, int, int] | None:
    """The sample of a tensor above :data:`SAMPLED` elements, over its flattened elements cut into runs of
    one 64-byte cache line: (offset, stride, runs, run length), i.e. every ``stride``-th run from a seeded
    ``offset``, ``runs`` of them, about SAMPLED elements in all. None: small enough for all of it."""
    numel = p.numel()
    if numel <= SAMPLED:
        return None
    return _plan(numel, p.shape[0] if p.dim() > 1 else 1, p.element_size())


@functools.lru_cache(maxsize=256)
def _plan(numel: int, units: int, element_size: int) -> tuple[int, int, int, int]:
    run = max(1, 64 // element_size)
    stride = -(-numel // SAMPLED)
    row = numel // units  # one unit's elements
    per_row = row // run if units > 1 and row % run == 0 else 0
    while per_row and math.gcd(stride, per_row) != 1:  # a stride dividing the rows would take the same
        stride += 1                                     # columns in every row (every 4th of 512: a quarter)
    offset = int(torch.randint(stride, (1,), generator=torch.Generator().manual_seed(numel)))
    return offset, stride, len(range(offset, numel // run, stride)), run


def _at(t: torch.Tensor, lines: tuple[int, int, int, int] | None) -> torch.Tensor:
    """``t`` at the sampled lines (a (runs, run length) strided view of its flat order), or all of it."""
    t = t.detach()
    if lines is None:
        return t
    offset, stride, runs, run = lines
    if not t.is_contiguous():
        t = t.reshape(-1)  # a copy, in flat order
    return t.as_strided((runs, run), (stride * run, 1), t.storage_offset() + offset * run)


def _exact_delta(optimizer: torch.optim.Optimizer, group: dict[str, Any], p: torch.Tensor,
                 lines: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, float] | None:
    """|W_after - W_before|^2 of the step just taken from the optimiser's state (see the module
    docstring), as (a device scalar, a host factor it is multiplied by); with ``lines``, over those
    elements only. The new weight stands in for the old one: W_before = (W_after + lr pushed) / (1 - lr wd)
    makes the step a multiple of ``pushed + k W_after``, one fused add, no cancellation."""
    state = optimizer.state.get(p, {})
    if p.grad is None or (not state and not isinstance(optimizer, torch.optim.SGD)):
        return None  # (plain SGD keeps no state: its step is the gradient's)
    lr, wd = float(group["lr"]), float(group.get("weight_decay", 0.0))
    if lr == 0.0:  # a warm-up's first step: nothing moved
        return torch.zeros((), device=p.device), 0.0
    decoupled = isinstance(optimizer, torch.optim.AdamW) or group.get("decoupled_weight_decay", False)
    decays = bool(wd) and (decoupled or isinstance(optimizer, torch.optim.SGD))  # the step holds wd x W_before
    if decays and lr * wd == 1.0:
        return None  # the decay erased the old weight: the step cannot be recovered from the new one
    c = lr * wd / (1.0 - lr * wd) if decays else 0.0  # W_before = (W_after + step) / (1 - lr wd): the decay's share
    if isinstance(optimizer, torch.optim.SGD):
        sign = -1.0 if group.get("maximize") else 1.0
        buf = state.get("momentum_buffer")
        momentum = float(group.get("momentum", 0.0))
        if momentum and buf is not None and not group.get("nesterov"):
            return squares_of(_at(buf, lines)), lr * lr  # the step is lr x the buffer
        grad = _at(p.grad, lines)
        # pushed = sign grad + momentum buf; the step is lr (pushed + wd W_before) = lr (1 + c) (pushed + c / (lr (1 + c)) W_after)
        k = sign * c / (lr * (1.0 + c))  # sign x pushed is what is formed: the same squares
        if momentum and buf is not None:
            pushed = torch.add(grad, _at(buf, lines), alpha=sign * momentum)
            if wd:
                pushed.add_(_at(p, lines), alpha=k)
        elif not wd:
            return squares_of(grad), lr * lr
        else:
            pushed = torch.add(grad, _at(p, lines), alpha=k)
        return squares_of(pushed), (lr * (1.0 + c)) ** 2
    step = float(state["step"])
    b1, b2 = group["betas"]
    root = (1 - b2**step) ** 0.5
    # Adam's step is size x m / (sqrt(v) / root + eps) = size x root x m / (sqrt(v) + eps root): the bias
    # correction goes to the host factor. The square root runs on a contiguous copy (on a strided view
    # torch's CPU sqrt takes a scalar loop: 137 us for 52k elements against 8 + 27 us) raised to the
    # smallest normal float first: torch's CPU sqrt of an exact zero takes 5x the time of a normal value
    # and of a subnormal one 30x (0.36 / 1.9 / 10.9 ms for 491k elements on this VM), and a weight whose
    # gradient vanished or whose units are dead has a second moment of mostly zeros (63% of the 30-layer
    # MLP's). sqrt(tiny) = 1.1e-19 beside eps x root >= 3e-10 moves the update by ~1e-10 relative (float16
    # is left as it was: see _TINY).
    size = lr / (1 - b1**step) * root
    second = _at(state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"], lines)
    tiny = _TINY.get(second.dtype)
    update = (second.clone(memory_format=torch.contiguous_format) if tiny is None
              else torch.clamp_min(second, tiny).contiguous()).sqrt_().add_(group["eps"] * root)
    torch.div(_at(state["exp_avg"], lines), update, out=update)  # the step is size x this
    if decays:  # the step is size (1 + c) (update + c / (size (1 + c)) W_after)
        update.add_(_at(p, lines), alpha=c / (size * (1.0 + c)))
        return squares_of(update), (size * (1.0 + c)) ** 2
    return squares_of(update), size * size
