"""The backward signal through time inside a recurrent layer (nn.RNN, nn.LSTM, nn.GRU; ONNX LSTM/GRU/RNN).

An RNN unrolled over T steps is a T-deep network with shared weights (THEORY.md section 6), but it is
one module call, so a per-layer row cannot show depth through time. This probe measures it directly:
on a detached copy of the layer's input it computes d(r . h_T)/dx_t for a seeded random projection r
of the last step's output, and keeps the RMS at every step t. The profile says how much of step t's
input still reaches the last step: flat for a memory that holds, ~(forget gate)^(T-t) for an LSTM,
~(spectral radius x tanh slope)^(T-t) for a tanh RNN. It is independent of the model's loss (a loss
on every step would hide the decay behind each step's own short path).

One extra forward and backward of that layer alone, once per recurrent row, on the batch's first
:data:`PROBE_SEQUENCES` sequences, with the caller's random state restored afterwards (dropout between
stacked layers draws from it); no parameter's ``.grad`` is touched (``torch.autograd.grad`` with respect
to the probe only).
"""

from __future__ import annotations

from typing import Any

import torch

RECURRENT_MODULES = frozenset({"RNN", "LSTM", "GRU"})

PROBE_SEQUENCES = 4
"""The probe runs on at most this many sequences of the batch (the first ones; every step of each). On the
whole batch it cost about what the model's own step does: on the benchmark's 2-layer LSTM (batch 16 x 64
steps, hidden 256, one CPU thread; bare step 30.7 ms) ``analyze`` took 64.1 ms, 2.09x the bare step, where
hand-written hooks take 1.01x; on 4 sequences 45.0 ms (1.46x; 8 sequences 51.9, 1 sequence 39.8: the steps'
own overhead). The profile is judged in decades (first/last against 1e-3 and 1e3): on a 64-sequence LSTM over
40 steps the first 4 sequences gave first/last 1.06e-8 against 7.64e-9 for all 64 at default init and 3.25e-4
against 3.51e-4 with forget-gate bias 1, and no step moved by more than 0.23 decades
(``tests/measure/test_through_time.py``)."""


def _detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple):
        return tuple(_detached(v) for v in value)
    return value


def _profile(x: torch.Tensor, time_dim: int, run: Any, seed: int) -> torch.Tensor | None:
    """RMS over all but ``time_dim`` of d(r . y_last)/dx, where ``run(probe)`` is the layer's output
    sequence for a detached, grad-requiring copy of ``x``; the caller's random state is restored."""
    steps = x.shape[time_dim]
    if steps < 2:
        return None
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), torch._C.DisableTorchFunction():
            probe = x.detach().requires_grad_(True)
            out = run(probe)
            sequence = out[0] if isinstance(out, tuple) else out
            last = sequence.select(time_dim, steps - 1)
            generator = torch.Generator().manual_seed(seed)
            r = torch.randn(last.shape, generator=generator, dtype=torch.float32).to(last.device, last.dtype)
            (grad,) = torch.autograd.grad((last * r).sum(), probe)
    except RuntimeError:  # e.g. cuDNN refuses an RNN backward in eval mode
        return None
    others = [d for d in range(grad.dim()) if d != time_dim]
    return grad.detach().float().pow(2).mean(dim=others).sqrt()


def time_profile(module: torch.nn.Module, args: tuple[Any, ...], seed: int) -> torch.Tensor | None:
    """Per-step RMS of d(r . h_T)/dx_t as a device tensor of T values, or None when not measurable
    (packed sequences, a single step, a backend that cannot run backward here)."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() not in (2, 3):
        return None
    time_dim = 1 if x.dim() == 3 and getattr(module, "batch_first", False) else 0
    rest = tuple(_detached(a) for a in args[1:])
    if x.dim() == 3:  # batched: x's batch dimension is the one that is not time; hx is (layers x directions, batch, hidden)
        x, rest = _first(x, 1 - time_dim), tuple(_first(a, 1) for a in rest)
    return _profile(x, time_dim, lambda probe: module.forward(probe, *rest), seed)


def _first(value: Any, dim: int) -> Any:
    """The first :data:`PROBE_SEQUENCES` entries of ``value`` along its batch dimension ``dim`` (a tensor, or
    a tuple of them such as an LSTM's (h0, c0)); anything else as it is."""
    if isinstance(value, tuple):
        return tuple(_first(v, dim) for v in value)
    if isinstance(value, torch.Tensor) and value.dim() > dim and value.shape[dim] > PROBE_SEQUENCES:
        return value.narrow(dim, 0, PROBE_SEQUENCES)
    return value


ONNX_RECURRENT = frozenset({"LSTM", "GRU", "RNN"})


def onnx_time_profile(inputs: list[Any], rerun: Any, batch_major: bool, seed: int) -> torch.Tensor | None:
    """The same profile for an ONNX LSTM/GRU/RNN node, re-run by the interpreter on a detached input.

    ONNX lays X out (seq, batch, input) and Y (seq, directions, batch, hidden); with ``layout=1`` both
    are batch-major: X (batch, seq, input), Y (batch, seq, directions, hidden).
    """
    x = inputs[0] if inputs else None
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 3:
        return None
    rest = [_detached(v) for v in inputs[1:]]
    # the batch dimension of each input that has one: X, sequence_lens (4), initial_h and initial_c (5, 6);
    # W, R, B and P are the weights
    batch = {0: 0 if batch_major else 1, 4: 0, 5: 0 if batch_major else 1, 6: 0 if batch_major else 1}
    x = _first(x, batch[0])
    rest = [_first(v, batch[i]) if i in batch else v for i, v in enumerate(rest, start=1)]
    return _profile(x, 1 if batch_major else 0, lambda probe: rerun([probe, *rest]), seed)
