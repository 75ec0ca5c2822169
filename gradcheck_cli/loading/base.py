"""What every model loader returns, whatever the file format.

A format's special abilities travel with the loaded model as plain values and callables (its own
random inputs, a reference runtime to verify against, names to display), so the analysis
orchestrator never asks which format it holds.
"""

from __future__ import annotations

from collections.abc import Callable
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
    mode_settable: bool = True
    """False when train/eval is fixed in the model (torch.export programs keep the mode they were exported in)."""
    make_inputs: Callable[[int, int | None, tuple[int, int] | None], tuple[Any, ...]] | None = None
    """(seed, batch size, integer range) -> random inputs the format itself declares (ONNX graph inputs)."""
    verify: Callable[[tuple[Any, ...], dict[str, Any]], str] | None = None
    """(args, kwargs) -> a note on how the front end's forward output agrees with a reference runtime."""
    display_names: dict[str, str] = field(default_factory=dict)
    """Parameter name -> the name users know it by (ONNX initializer names)."""
