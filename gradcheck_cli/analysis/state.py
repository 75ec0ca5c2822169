"""What an analysis leaves as it found it: the caller's grad mode and RNG, the model's device, modes,
gradients and buffers, and the garbage collector's state; and the seeding of the passes' own randomness."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from gradcheck_cli.measure.tree import ModuleTree, module_tree


@contextmanager
def grad_on() -> Iterator[None]:
    """Gradients on for the whole analysis, whatever the caller's mode, which is restored afterwards: called
    under ``torch.no_grad()`` or ``torch.inference_mode()`` (an evaluation loop, a validation hook, a notebook
    cell) the passes built no graph, and the error blamed frozen parameters. Loading runs inside it too: a
    model file read in inference mode would hold inference tensors, which autograd cannot save. (Captum
    enables gradients for its attributions the same way.)"""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def seed_passes(device: torch.device, seed: int) -> None:
    """Seed the generators the passes draw from (dropout; CPU-side random data): the CPU's and the device's.

    Not ``torch.manual_seed``: for every accelerator that is not initialised (CUDA, XPU, MTIA on a CPU run)
    it queues a deferred seed with a formatted stack trace (250 us a call timed directly, against 1.3 us). :func:`rng_kept`
    restores whatever this changes.
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


@contextmanager
def rng_kept(device: torch.device) -> Iterator[None]:
    """The caller's global RNG state (CPU, and the CUDA device in use) is as it was afterwards: the
    analysis seeds its own randomness (dropout, random inputs)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
        yield


@contextmanager
def on_device(module: Any, device: torch.device) -> Iterator[None]:
    """Run on ``device``; a caller's module that lives elsewhere goes back where it was afterwards."""
    first = next(iter(module.parameters()), None)
    home = first.device if first is not None else device
    if home.type == "meta":  # --meta-init: materialised on its device when sharded
        yield
        return
    if home != device:
        module.to(device)
    try:
        yield
    finally:
        if home != device:
            module.to(home)


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during the analysis (passes, statistics, rules, report).

    A full collection walks every object of the process (130-170 ms once torch and transformers are
    imported); landing inside a pass it made that call several times slower than the median. Paused
    for the whole call rather than the passes only, the temporaries of finalising and reporting die
    by reference count before any young collection can promote them: on the 30-layer MLP young
    collections fell from 90 to 37 per 100 calls. In steady state a call leaves three objects in the
    oldest generation, so it never brings on a full collection (none in 200 calls of ``tiny60``, 100
    of the MLP, 40 of GPT-2); the one a process owes for its imports lands in whichever call comes
    first (benchmarks/bench.py pays it before timing). The collector is restored, never forced,
    afterwards; a model whose forward makes reference cycles holds them until then."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def preserved(module: torch.nn.Module, mode: str, settable: bool = True,
               tree: ModuleTree | None = None) -> Iterator[dict[str, torch.nn.Parameter]]:
    """Set train/eval mode and clear grads; restore modes, grads and buffers (BN stats) afterwards.
    Only what differs is written (``Module.__setattr__`` is the slow part of a mode flag)."""
    if tree is None:
        tree = module_tree(module)
    modes = [(m, m.training) for _, m in tree.modules]
    params: dict[str, torch.nn.Parameter] = dict(tree.params)
    saved_grads = {name: p.grad for name, p in params.items() if p.grad is not None}
    saved_buffers = [(b, b.detach().clone()) for b in tree.buffers]
    try:
        training = mode == "train"
        if settable and any(flag != training for _, flag in modes):
            module.train(training)
        for name in saved_grads:
            params[name].grad = None
        yield params
    finally:
        with torch.no_grad():
            for buffer, value in saved_buffers:
                buffer.copy_(value)
        for m, training in modes:
            if m.training != training:
                m.training = training
        for name, p in params.items():
            p.grad = saved_grads.get(name)
