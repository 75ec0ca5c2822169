"""Turning a model output into a scalar loss whose backward pass we can observe.

Default without targets: the *random projection* ``sum(output * r)`` with ``r ~ N(0, 1)``
seeded. Its gradient with respect to every output element is ``r``: unit scale, independent of
the output's own magnitude and of any labels, and never zero (``sum`` would give zero gradient
through a softmax, whose outputs always sum to one). So the backward signal at the output has
RMS 1, and what the report shows per layer is exactly how the network transforms it.

Training without targets cannot use it: a linear functional is unbounded below, so minimising it
drives the outputs to infinity by design. ``random-target`` is the mean squared error to a fixed
seeded N(0, 1) target per batch: bounded below by 0, so a falling loss means the optimiser works
(the model memorises noise; it says nothing about generalisation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from gradcheck_cli.errors import AnalysisError, InputError, first_line
from gradcheck_cli.measure.model_output import first_tensor


def pick_output(output: Any) -> torch.Tensor:
    """The tensor to take the loss of: the output, the first tensor of a tuple, or ``logits``."""
    tensor = first_tensor(output)
    if tensor is None:
        raise AnalysisError(f"the model returned {type(output).__name__} with no tensor in it")
    if not tensor.is_floating_point():
        raise AnalysisError(f"the model's output is {tensor.dtype}, so no gradient can flow back through it")
    if not tensor.requires_grad:
        raise AnalysisError(
            "the model's output has no gradient path: no parameter requires grad",
            hint="unfreeze the parameters (requires_grad=True) you want analysed",
        )
    return tensor


def resolve_loss(name: str, target: torch.Tensor | None) -> str:
    if name != "auto":
        return name
    if target is None:
        return "projection"
    return "mse" if target.is_floating_point() else "cross-entropy"


def compute_loss(name: str, output: torch.Tensor, target: torch.Tensor | None, seed: int,
                 part: tuple[int, int] | None = None) -> torch.Tensor:
    """The scalar loss of ``output``. ``part = (offset, total)``: the output holds samples ``offset ..``
    of a global batch of ``total`` split across processes; each process's loss is then its share of the
    global batch's loss (the seeded projection/targets sliced from the global ones, means taken over the
    global count), so the shares sum to the single-process loss and every gradient equals its part of
    the single-process one."""
    share = 1.0 if part is None or not output.dim() else output.shape[0] / part[1]
    if name in ("projection", "random-target") and output.dim() == 0:
        # the model returns its own loss: backpropagated, and trained on, as it is (the projection of one number
        # would start the signal at an arbitrary |r|, not 1; a random target would train the loss towards r)
        return output
    if name in ("projection", "random-target"):
        r = _seeded(output, seed, part)
        return (output * r).sum() if name == "projection" else F.mse_loss(output, r) * share
    if name == "sum":
        return output.sum()
    if target is None:
        raise InputError(f"--loss {name} needs targets", hint="pass --target FILE or use --loss projection")
    target = target.to(output.device)
    if name == "mse":
        if target.shape != output.shape:
            raise InputError(f"target shape {tuple(target.shape)} does not match output shape {tuple(output.shape)} for MSE")
        return F.mse_loss(output, target.to(output.dtype)) * share
    return _cross_entropy(output, target) * share


def _seeded(output: torch.Tensor, seed: int, part: tuple[int, int] | None) -> torch.Tensor:
    """N(0, 1) of the output's shape from ``seed`` (a process's slice of the global batch's, under ``part``)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    shape = output.shape if part is None or not output.dim() else (part[1], *output.shape[1:])
    r = torch.randn(shape, generator=generator, dtype=torch.float32)
    if part is not None and output.dim():
        r = r[part[0] : part[0] + output.shape[0]]
    return r.to(output.device, output.dtype)


def _cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if target.is_floating_point():
        raise InputError("cross-entropy needs integer class targets", hint="use --loss mse for float targets")
    if output.dim() >= 2 and target.shape == output.shape[:-1] and target.shape != output.shape[:1] + output.shape[2:]:
        output, target = output.reshape(-1, output.shape[-1]), target.reshape(-1)  # (N, T, C) language models
    classes = output.shape[1] if output.dim() >= 2 else output.shape[0]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= classes):
        raise InputError(f"class targets must lie in [0, {classes - 1}] for an output with {classes} classes, got {int(target.min())}..{int(target.max())}")
    try:
        return F.cross_entropy(output, target.long())
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"targets do not fit the output {tuple(output.shape)} for cross-entropy: {first_line(exc)}") from None
