"""Save the README's example models and data samples into a folder (default: examples/out, git-ignored;
so is out/ at the repository root).

    python examples/save_examples.py [OUT_DIR]

Writes: sigmoid_mlp.ts (TorchScript), relu_mlp_weights.pt (a state_dict for
``--factory examples/models.py:bad_relu_mlp``), resnet.pt2 (torch.export), and the samples
mlp_batch.pt (inputs and integer labels) and images.pt.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import bad_relu_mlp, deep_sigmoid_mlp, small_resnet  # noqa: E402


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)

    torch.jit.save(torch.jit.script(deep_sigmoid_mlp()), out / "sigmoid_mlp.ts")
    torch.save(
        {"input": torch.randn(256, 64, generator=generator), "target": torch.randint(0, 10, (256,), generator=generator)},
        out / "mlp_batch.pt",
    )
    torch.save(bad_relu_mlp().state_dict(), out / "relu_mlp_weights.pt")
    torch.save(torch.randn(256, 256, generator=generator), out / "relu_batch.pt")
    images = torch.randn(16, 3, 32, 32, generator=generator)
    torch.export.save(torch.export.export(small_resnet(), (images,)), out / "resnet.pt2")
    torch.save(images, out / "images.pt")
    for path in sorted(out.iterdir()):
        print(path)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "out")
