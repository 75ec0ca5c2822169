"""The model-zoo table of ``benchmarks/verdicts/zoo.py``, loaded for the tests (one line per family there)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

ZOO = Path(__file__).resolve().parents[2] / "benchmarks" / "verdicts" / "zoo.py"
_spec = importlib.util.spec_from_file_location("gradcheck_zoo", ZOO)
zoo = importlib.util.module_from_spec(_spec)
sys.modules["gradcheck_zoo"] = zoo  # dataclasses look their module up while being defined
_spec.loader.exec_module(zoo)  # type: ignore[union-attr]
FAMILIES = {family.name: family for family in zoo.families()}


def built(name: str):  # noqa: ANN201
    """A family's model at its library's own init, and its inputs (seeded)."""
    torch.manual_seed(0)
    model = FAMILIES[name].build()
    torch.manual_seed(1)
    return model, FAMILIES[name].inputs()


class FirstOutput(torch.nn.Module):
    """The model's first output tensor (logits or the last hidden state), called with positional inputs
    (what tracing and the ONNX exporter pass): a plain tensor out, no pytree class to register on load."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, args))).to_tuple()[0]
