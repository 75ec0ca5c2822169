"""Start N CPU processes (gloo) the way torchrun does, run a function in each, collect rank 0's result."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, target: str, kwargs: dict[str, Any], out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "GRADCHECK_DIST_TIMEOUT": "60"})
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    module, _, name = target.partition(":")
    result = getattr(__import__(module), name)(**kwargs)
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


def run_ranks(world: int, target: str, tmp: Path, expect_exit: dict[int, int] | None = None, **kwargs: Any) -> list[Any]:
    """``target`` is ``module:function`` in this folder; returns every rank's JSON result (None for a rank
    that was expected to exit with the code in ``expect_exit``)."""
    context = mp.start_processes(_worker, args=(world, free_port(), target, kwargs, str(tmp)), nprocs=world,
                                 start_method="spawn", join=False)
    expected = expect_exit or {}
    for process in context.processes:
        process.join(120)
    for rank, process in enumerate(context.processes):
        if process.is_alive():
            process.kill()
            raise AssertionError(f"rank {rank} still running after 120 s")
        assert process.exitcode == expected.get(rank, 0), (rank, process.exitcode)
    return [json.loads(Path(tmp, f"rank{r}.json").read_text()) if r not in expected else None for r in range(world)]
