"""What one instrumented run measured: per-layer statistics, parameter norms and the topology.

The one seam between measuring and diagnosing: every way of running a model (one analysis, a
training step, a distributed run) produces a :class:`Measurements`; :mod:`gradcheck_cli.diagnose.build`
turns it into a report.
"""

from __future__ import annotations

from dataclasses import field

from gradcheck_cli.measure.collector import LayerStats
from gradcheck_cli.records import record
from gradcheck_cli.measure.topology import Topology


@record
class ParamMeasure:
    name: str
    shape: tuple[int, ...]
    numel: int
    requires_grad: bool
    weight_norm: float
    grad_norm: float | None
    aliases: list[str] = field(default_factory=list)
    unit_deviation: float | None = None
    """||W - mean unit|| over the layer's units (None: not a layer weight); 0 when all units are identical."""
    quantised: str | None = None
    """The integer dtype the tensor is stored in (a quantised weight, dequantised where it is used), else None."""


@record
class Measurements:
    layers: list[LayerStats]
    params: list[ParamMeasure]
    topology: Topology = field(default_factory=Topology)
    notes: list[str] = field(default_factory=list)
    """What the measurement could not see, for the report to say (layers inside TorchScript submodules)."""
