"""One forward + loss + backward pass with the user's errors translated (shared by analysis and training)."""

from __future__ import annotations

from typing import Any

import torch

from gradcheck_cli.analysis.loss import compute_loss, pick_output
from gradcheck_cli.analysis.sample import Sample
from gradcheck_cli.errors import AnalysisError, GradcheckError, InputError, first_line
from gradcheck_cli.measure.collector import StatsCollector


def forward_backward(module: Any, forward: Any, batch: Sample, loss_name: str, seed: int,
                     collector: StatsCollector | None = None) -> torch.Tensor:
    """One forward, loss and backward pass; the user's model raising becomes a one-line error saying
    where. With a collector (an instrumented pass) the first loss node is kept for the topology.
    Returns the loss (its graph freed)."""
    layers = collector.layers if collector is not None else []
    output = _forward(module, forward, batch, layers)
    loss = compute_loss(loss_name, pick_output(output), batch.target, seed, batch.part)
    if collector is not None and collector.root is None:
        collector.root = loss.grad_fn  # the first batch's graph tells the topology
    try:
        loss.backward()
    except torch.OutOfMemoryError:
        raise AnalysisError("out of memory in the backward pass", hint="use a smaller --batch-size") from None
    except RuntimeError as exc:
        raise AnalysisError(f"the backward pass raised: {first_line(exc)}") from exc
    return loss


def materialise(module: torch.nn.Module, batch: Sample) -> None:
    """Give lazy parameters (``nn.LazyLinear``, ``LazyConv2d``) their shapes and init with one forward
    pass of ``batch``, without gradients and in eval mode (no BatchNorm statistics move, no dropout), as
    the model's first call would; the modules' modes are restored."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            _forward(module, module, batch, [])
    finally:
        for m, training in modes:
            m.training = training


def _forward(module: Any, forward: Any, batch: Sample, layers: list) -> Any:
    """The forward pass, the user's model raising translated into a one-line error saying where."""
    try:
        return forward(*batch.args, **batch.kwargs)
    except GradcheckError:
        raise
    except torch.OutOfMemoryError:
        raise AnalysisError("out of memory in the forward pass", hint="use a smaller --batch-size") from None
    except Exception as exc:  # noqa: BLE001 - the user's model raised: say where, not how
        if isinstance(exc, TypeError) and not layers and "argument" in str(exc) and (
                "missing" in str(exc) or "positional" in str(exc) or "unexpected keyword" in str(exc)):
            raise InputError(f"the inputs do not match the model's forward arguments: {first_line(exc)}",
                             hint="repeat --input-shape once per positional input, or pass a .pt dict of keyword "
                                  "tensors named as forward's arguments") from None
        where = f" (after layer {layers[-1].name})" if layers else ""
        if "more than 1 value per channel" in str(exc):  # BatchNorm's batch statistics of a single sample
            hint = "BatchNorm in train mode needs more than one value per channel: give 2 or more samples, or --mode eval"
        else:
            hint = _input_hint(module, batch) if not layers else "check the input against what the model expects"
        raise AnalysisError(f"the model's forward pass raised {type(exc).__name__}: {first_line(exc)}{where}",
                            hint=hint) from exc


def _input_hint(module: Any, batch: Sample) -> str:
    """What the first weight layer expects, next to what was given (the usual cause of a failing first call)."""
    given = ", ".join(str(tuple(t.shape)) + f" {str(t.dtype).removeprefix('torch.')}" for t in batch.tensors())
    for name, child in module.named_modules():
        expected = None
        if isinstance(child, torch.nn.Linear):
            expected = f"{child.in_features} features in its last dimension, {_dtype_name(child.weight)}"
        elif isinstance(child, torch.nn.modules.conv._ConvNd):
            expected = (f"{child.in_channels} channels in dimension 1 ({child.weight.dim()}-d input incl. batch), "
                        f"{_dtype_name(child.weight)}")
        elif isinstance(child, torch.nn.Embedding):
            expected = f"integer token ids below {child.num_embeddings}"
        if expected:
            return f"the first layer {name} ({type(child).__name__}) expects {expected}; the input was {given}"
    return f"check the input (given: {given}) against what the model expects"


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")
