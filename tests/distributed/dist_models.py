"""Models and runs for the distributed tests (imported in the spawned processes)."""

from __future__ import annotations

import torch
from torch import nn


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 5))


class Blocks(nn.Module):
    """A residual stack in a ModuleList (what FSDP shards block by block)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inp = nn.Linear(12, 32)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(32), nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
                                    for _ in range(3))
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.head(h)


def data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 12, generator=g), torch.randint(0, 5, (n,), generator=g)


def analyse(model: str, strategy: str = "none", loss: str = "auto", targets: bool = True, batch_size: int | None = None,
            batches: int = 1) -> dict:
    from gradcheck_cli import analyze

    x, y = data()
    build = {"mlp": mlp, "blocks": Blocks}[model]
    report = analyze(build(), x, target=y if targets else None, distributed=strategy, loss=loss,
                     batch_size=batch_size, batches=batches)
    return report.to_dict()


class BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


class Transformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(40, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 40)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.enc(self.emb(tokens)))


class FailsOnRankOne(nn.Module):
    """Raises in forward on rank 1 only (bad input there), or dies there without a word (``die``)."""

    def __init__(self, die: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 5)
        self.die = die

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import os

        import torch.distributed as dist

        if dist.get_rank() == 1:
            if self.die:
                os._exit(9)  # as if killed: no message, no cleanup
            raise ValueError("rank 1 got a batch it cannot take")
        return self.fc(x)


def inputs(model: str, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(1)
    if model == "bn":
        return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)
    if model == "transformer":
        tokens = torch.randint(0, 40, (n, 10), generator=g)
        return tokens, torch.roll(tokens, 1, 1)
    return torch.randn(n, 12, generator=g), torch.randint(0, 5, (n,), generator=g)


def run(model: str, strategy: str = "none", loss: str = "auto", n: int = 24, mode: str = "train",
        batch_size: int | None = None, batches: int = 1, meta_init: bool = False, weights: str | None = None) -> dict:
    """One analysis; a GradcheckError becomes {"error", "exit_code"} (what the CLI would print and return)."""
    import time

    from gradcheck_cli import analyze
    from gradcheck_cli.errors import GradcheckError

    builders = {"mlp": mlp, "blocks": Blocks, "bn": BatchNormNet, "transformer": Transformer,
                "fails": FailsOnRankOne, "dies": lambda: FailsOnRankOne(die=True)}
    x, y = inputs(model, n)
    start = time.monotonic()
    try:
        spec = f"{__file__}:{ {'blocks': 'Blocks'}.get(model, model)}"
        built = weights or (spec if meta_init else builders[model]())
        report = analyze(built, x, target=None if loss == "projection" else y, distributed=strategy,
                         loss=loss, mode=mode, batch_size=batch_size, batches=batches, meta_init=meta_init,
                         factory=spec if weights else None)
    except GradcheckError as exc:
        cause = exc.__cause__
        return {"error": str(exc), "exit_code": exc.exit_code, "seconds": time.monotonic() - start,
                "cause": [type(c).__mro__[0].__qualname__ for c in (cause, getattr(cause, "__cause__", None)) if c is not None]}
    return report.to_dict()
