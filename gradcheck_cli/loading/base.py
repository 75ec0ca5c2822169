"""What every model loader returns, whatever the file format."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadedModel:
    """A model ready to instrument.

    ``frontend`` picks the instrumentation strategy: ``modules`` (forward hooks), ``fx``
    (torch.export graph), ``torchscript`` (rewritten TorchScript graph) or ``onnx`` (interpreter).
    """

    module: Any  # torch.nn.Module; typed loosely to keep this module free of torch imports
    format: str
    source: str
    frontend: str = "modules"
    example_inputs: tuple[Any, ...] | None = None
    """Inputs stored with the model (torch.export keeps them); used when the user gives none."""
    notes: list[str] = field(default_factory=list)
