"""Running under torchrun: the process group, the model wrapped by PyTorch's own DDP or FSDP2, and
errors that end every rank with one message.

- ``--distributed ddp|fsdp|auto``: ``auto`` means DDP when torchrun started several processes
  (``WORLD_SIZE`` > 1), else a plain single-process run.
- The global batch is split across ranks (``Sample.shard``) and each rank's loss is its share of the
  global batch's loss (``analysis/loss.py``), so gradients sum to the single-process ones. DDP and
  FSDP are told to sum (not average) across ranks: the parameter gradients are then the global
  batch's, as a single process over that batch would have them.
- Errors: a rank that fails writes its message and exit code to the process group's store and leaves;
  the others' next collective fails (gloo/nccl see the closed connection, or the ``GRADCHECK_DIST_TIMEOUT``
  timeout, default 300 s, expires) and they raise that same error, "rank N: ...", so every rank
  exits with the documented code and rank 0 prints one line.
"""

import fnmatch
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from gradcheck_cli.errors import AnalysisError, GradcheckError, InputError, ModelLoadError, UsageError, first_line

STRATEGIES = ("none", "auto", "ddp", "fsdp")
_ERROR_KEY = "gradcheck/error"
_ERRORS = {cls.__name__: cls for cls in (UsageError, ModelLoadError, InputError, AnalysisError)}


@dataclass
class Distributed:
    strategy: str
    rank: int
    world: int
    device: torch.device
    shard_by: str | None = None
    _store: Any = None
    meta_rng: torch.Tensor | None = None
    """``--meta-init``: the CPU RNG state right after the factory built the model on the meta device."""
    meta_weights: dict[str, Any] | None = None
    """``--meta-init`` with a weights file: its lazily read state_dict (keys as the model's)."""

    def shard_batches(self, batches: list[Any]) -> list[Any]:
        return [batch.shard(self.rank, self.world) for batch in batches]

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """The module as the strategy runs it (DDP: a wrapper; FSDP2: sharded in place, itself)."""
        if self.strategy == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            ddp = DistributedDataParallel(module, device_ids=ids)
            ddp.register_comm_hook(None, _sum_hook)
            return ddp
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        from torch.distributed.fsdp import FSDPModule

        mesh = init_device_mesh(self.device.type, (self.world,))
        for name in shard_units(module, self.shard_by):
            fully_shard(module.get_submodule(name), mesh=mesh)
        fully_shard(module, mesh=mesh)
        for unit in module.modules():
            if isinstance(unit, FSDPModule):
                unit.set_gradient_divide_factor(1.0)  # sum across ranks, as DDP's hook does
                unit.set_force_sum_reduction_for_comms(True)  # plain SUM collectives (gloo has no PREMUL_SUM)
        if self.meta_weights is not None:
            load_shards(module, self.device, self.meta_weights)
        elif self.meta_rng is not None:
            materialize(module, self.device, self.meta_rng)
        return module

    def accumulating(self, wrapped: torch.nn.Module, last: bool) -> Any:
        """DDP all-reduces whatever ``.grad`` holds at each backward: over several batches, only the last
        may sync (``no_sync`` before it), or the gradients of earlier batches are summed again. FSDP2
        reduce-scatters each backward's new gradients into the sharded ones: nothing to do."""
        from contextlib import nullcontext

        return wrapped.no_sync() if self.strategy == "ddp" and not last else nullcontext()

    def global_shapes(self, stats: list[Any], local: int | None, total: int | None) -> None:
        """Output shapes as the single process sees them: dim 0 of a rank's share is the global batch."""
        if not local or not total or local == total:
            return
        for s in stats:
            shape = s.info.shape
            if shape and shape[0] == local:
                s.info.shape = (total, *shape[1:])

    def publish(self, exc: GradcheckError) -> None:
        """Tell the other ranks why this one stops (best effort: the store may be gone already)."""
        try:
            self._store.set(_ERROR_KEY, f"{type(exc).__name__}\t{self.rank}\t{exc.message}\t{exc.hint or ''}")
        except Exception:  # noqa: BLE001
            pass

    def resolve(self, exc: GradcheckError) -> GradcheckError:
        """The error to end this rank with: a peer's, if one already published why it stopped (this rank's
        own error is then only the collective that failed because of it), else this rank's, published."""
        try:
            if self._store.check([_ERROR_KEY]):
                return self.peer_error(exc)
        except Exception:  # noqa: BLE001
            pass
        if _collective_failed(exc.__cause__):  # our backward's all-reduce lost a peer that left no word
            return self.peer_error(exc.__cause__)
        self.publish(exc)
        return exc

    def peer_error(self, exc: BaseException) -> GradcheckError:
        """The error a peer published, for a collective that failed because that peer left."""
        try:
            self._store.wait([_ERROR_KEY], timedelta(seconds=5))
            kind, rank, message, hint = self._store.get(_ERROR_KEY).decode().split("\t", 3)
            return _ERRORS.get(kind, AnalysisError)(f"rank {rank}: {message}", hint=hint or None)
        except Exception:  # noqa: BLE001 - no message: the peer died without one (killed, crashed)
            return AnalysisError(f"another process of the run stopped without a message ({first_line(exc)})",
                                 hint="see that rank's own output; was it killed or out of memory?")

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def start(strategy: str, device: torch.device, shard_by: str | None = None) -> Distributed | None:
    """Join the torchrun process group (or the one already initialised), or None for a single process."""
    import torch.distributed as dist

    if strategy not in STRATEGIES:
        raise UsageError(f"unknown --distributed {strategy!r}", hint=f"use one of: {', '.join(STRATEGIES)}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if strategy == "none" or (strategy == "auto" and world <= 1 and not dist.is_initialized()):
        return None
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise UsageError(f"--distributed {strategy} needs the torchrun environment (MASTER_ADDR, RANK, WORLD_SIZE)",
                             hint="launch with: torchrun --nproc-per-node N -m gradcheck_cli analyze ...")
        timeout = timedelta(seconds=float(os.environ.get("GRADCHECK_DIST_TIMEOUT", "300")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1))))
        torch.cuda.set_device(device)
    from torch.distributed.distributed_c10d import _get_default_store

    return Distributed("ddp" if strategy == "auto" else strategy, rank, world, device, shard_by, _get_default_store())


def build_on_meta(spec: str, factory_args: dict[str, Any] | None) -> tuple[torch.nn.Module, torch.Tensor]:
    """``--meta-init``: the factory's model on the meta device (no memory, no random draws), and the RNG
    state it left (its own ``manual_seed``), from which :func:`materialize` replays the init."""
    from gradcheck_cli.loading.factory import call_factory

    with torch.device("meta"):
        module = call_factory(spec, factory_args)
    return module, torch.get_rng_state()


_RESETS = ("reset_parameters", "_reset_parameters")


def materialize(module: torch.nn.Module, device: torch.device, rng: torch.Tensor) -> None:
    """Give a meta-built, FSDP2-sharded model real values: each rank allocates only its shards
    (``to_empty``), then every module's own ``reset_parameters`` runs again in module order, from the
    factory's RNG state, on a full-size temporary of that module's parameters only (one module at a
    time: a layer, never the model), and each rank keeps its shard of the result. So the values are the
    ones a normal build draws when its modules initialise in module order (nn.Sequential, ModuleList
    stacks); an init the factory applies by hand after construction is not replayed (build normally
    for those). A buffer no reset method rebuilds (one computed in ``__init__``) cannot be restored:
    that is a usage error naming it.
    """
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    module.to_empty(device=device)
    torch.set_rng_state(rng)
    rebuilt: set[int] = set()
    with torch.no_grad():
        for name, child in module.named_modules():
            own = dict(child.named_parameters(recurse=False))
            reset = next((getattr(child, r) for r in _RESETS if callable(getattr(child, r, None))), None)
            if reset is None:
                if own:
                    raise UsageError(f"--meta-init: {name or 'the model'} ({type(child).__name__}) has parameters but no "
                                     "reset_parameters() to initialise them", hint="build the model normally (no --meta-init)")
                continue
            full = {n: torch.empty(p.shape, dtype=p.dtype, device=device) for n, p in own.items()}
            for n, tensor in full.items():
                child._parameters[n] = torch.nn.Parameter(tensor, requires_grad=own[n].requires_grad)
            try:
                reset()
            finally:
                for n, sharded in own.items():
                    child._parameters[n] = sharded
            for n, sharded in own.items():
                local = sharded.to_local() if hasattr(sharded, "to_local") else sharded
                if hasattr(sharded, "device_mesh"):
                    shape, offset = compute_local_shape_and_global_offset(sharded.shape, sharded.device_mesh,
                                                                          sharded.placements)
                    part = full[n][tuple(slice(o, o + k) for o, k in zip(offset, shape))]
                else:
                    part = full[n]
                local.copy_(part)
            rebuilt |= {id(b) for b in child.buffers(recurse=False)}
    stale = [n for n, b in module.named_buffers() if id(b) not in rebuilt]
    if stale:
        raise UsageError(f"--meta-init cannot rebuild the buffer {stale[0]} (no reset method recomputes it)",
                         hint="build the model normally (no --meta-init)")


def load_shards(module: torch.nn.Module, device: torch.device, state: dict[str, Any]) -> None:
    """``--meta-init`` with weights: each rank allocates its shards and reads only those rows of every
    tensor from the file (safetensors slices, or a memory-mapped ``torch.save`` file); buffers, which FSDP
    does not shard, whole. A buffer the file lacks (not persistent) cannot be restored: refused by name."""
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    module.to_empty(device=device)
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if name not in state:
                raise UsageError(f"--meta-init: {name} is not in the weights file (a buffer computed in __init__)",
                                 hint="load the model without --meta-init")
            local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
            if hasattr(tensor, "device_mesh"):
                shape, offset = compute_local_shape_and_global_offset(tensor.shape, tensor.device_mesh, tensor.placements)
                part = state[name][tuple(slice(o, o + k) for o, k in zip(offset, shape))]
            else:
                part = state[name][tuple(slice(None) for _ in tensor.shape)] if tensor.dim() else state[name][()]
            local.copy_(part)


def shard_units(module: torch.nn.Module, pattern: str | None = None) -> list[str]:
    """The submodules FSDP2 shards as units: those matching ``--shard-by GLOB``, else every child of every
    ``ModuleList``/``Sequential`` of two or more modules of the same type (the transformer blocks, the
    stages), outermost first and none inside another."""
    if pattern:
        names = [n for n, _ in module.named_modules() if n and fnmatch.fnmatchcase(n, pattern)]
        if not names:
            raise UsageError(f"--shard-by {pattern!r} matches no submodule", hint="use module names, e.g. 'h.*'")
        return [n for n in names if not any(n.startswith(o + ".") for o in names if o != n)]
    units: list[str] = []
    for name, child in module.named_modules():
        if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)) and len(child) >= 2 and not any(
                name.startswith(u + ".") for u in units):
            types = {type(m) for m in child}
            if len(types) == 1 and any(p.numel() for p in child.parameters()):
                units += [f"{name}.{i}" if name else str(i) for i in range(len(child))]
    return units


def _collective_failed(exc: BaseException | None) -> bool:
    """A communication failure (a peer's connection closed or timed out), as gloo and NCCL report it."""
    if exc is None:
        return False
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return any(mark in text for mark in ("gloo/transport", "Connection reset by peer", "Connection closed", "NCCL error",
                                         "Timed out", "timed out"))


def _sum_hook(state: object, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP's all-reduce, summing instead of averaging (each rank's loss is already its share)."""
    return dist.all_reduce(bucket.buffer(), async_op=True).get_future().then(lambda fut: fut.value()[0])
