"""The report: frozen dataclasses and their JSON form.

``Report.to_dict()`` *is* the JSON document: floats are rounded to 7 significant digits (so a
report is byte-identical across runs that agree to float32 precision), and a non-finite float
becomes ``null`` plus a sibling ``<key>_nonfinite`` field (``"nan"``, ``"inf"``, ``"-inf"``),
so the output is always valid JSON. ``SCHEMA_VERSION`` is bumped on any breaking change to keys
or meanings; additions of new keys keep the version.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

from gradcheck_cli.analysis.options import IgnoreRule

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ActivationStats:
    mean: float
    """Mean of every output element over all analysed samples."""
    std: float
    """Population standard deviation of the output elements."""
    signal_std: float | None
    """Per-unit std across samples and positions, averaged over units: the input-dependent part of the
    activation (biases excluded). None when each unit was seen only once (batch of one)."""
    centring: float
    """|mean| / std: 0 for a zero-centred signal, ~2.4 for sigmoid outputs."""
    min: float
    max: float
    zero_fraction: float | None
    """Fraction of exact zeros: the per-sample sparsity (about 0.5 for a healthy ReLU). Counted after
    activations; after weight, norm, embedding, attention and recurrent layers, where an exact zero is
    an accident, only when the range implies it (none when 0 lies outside [min, max], all when every
    value is 0), else null."""
    nonfinite_units: int
    """Units (features; channels after a conv) whose outputs held NaN/Inf in some pass (an inf std with
    none means float32 overflow, i.e. values beyond ~1.8e19)."""
    dead_ratio: float | None
    """Fraction of units (features; channels after a conv) that were zero for EVERY sample and position."""
    units: int | None
    samples_per_unit: float | None
    """Observations behind each unit's dead/alive verdict (samples x positions)."""
    saturation: float | None
    """Fraction of outputs within 0.01 of a sigmoid/tanh asymptote (at the bound for hard variants)."""


@dataclass(frozen=True)
class GradStats:
    output_rms: float | None
    """RMS of dLoss/d(layer output): the backward signal arriving at this layer (inf when its
    squares overflow float32, i.e. values beyond ~1.8e19)."""
    nonfinite: bool
    """The gradient held NaN/Inf."""
    weight_norm: float | None
    """L2 norm of the weight's gradient."""
    bias_norm: float | None
    weight_rms: float | None
    weight_ratio: float | None
    """|grad W| / |W|: the relative step one SGD update with learning rate 1 would take."""


@dataclass(frozen=True)
class InitAdvice:
    fan_in: int
    fan_out: int
    activation_after: str
    """The nonlinearity that follows the layer (``linear`` if none), detected from the layer order."""
    normalized_after: bool
    """A normalisation layer follows, so the weight scale is normalised away in the forward pass."""
    scheme: str
    """he | xavier | lecun: the scheme that keeps the signal's variance constant here."""
    gain: float
    current_std: float
    """RMS of the current weights (init schemes are zero-mean, so this is their std)."""
    recommended_std: float
    ratio: float
    """current_std / recommended_std."""
    current_scheme: str
    """What the current weights look like: pytorch_default, he, xavier, lecun (several if ambiguous) or custom."""


@dataclass(frozen=True)
class LayerReport:
    index: int
    name: str
    kind: str
    type: str
    observed: bool
    shape: list[int] | None
    """Output shape at the first call (batch first)."""
    activation: ActivationStats | None
    grad: GradStats
    init: InitAdvice | None
    note: str | None = None


@dataclass(frozen=True)
class ParameterReport:
    name: str
    layer: str | None
    shape: list[int]
    numel: int
    grad_norm: float | None
    """None when no gradient reached the parameter (unused, or frozen)."""
    grad_rms: float | None
    weight_norm: float
    ratio: float | None
    requires_grad: bool
    aliases: list[str] = field(default_factory=list)
    """Other names of the same tensor (tied weights are counted once)."""


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str
    layer: str
    value: float
    threshold: float
    message: str
    hint: str


@dataclass(frozen=True)
class ModelInfo:
    source: str
    format: str
    parameters: int
    trainable_parameters: int


@dataclass(frozen=True)
class RunInfo:
    device: str
    loss: str
    mode: str
    batches: int
    batch_size: int | None
    samples: int | None
    seed: int
    fail_on: list[str]
    thresholds: dict[str, float]
    ignore: list[IgnoreRule] = field(default_factory=list)
    """Ignore rules in force (from the command line and the config file)."""
    config: str | None = None
    """The config file whose ``[tool.gradcheck]`` settings were used, if any."""
    sample_stats: int | None = None
    """Forward statistics were computed on this many seeded units per layer (None: on all units)."""


@dataclass(frozen=True)
class Summary:
    status: str
    """ok (no findings), warn (findings outside the fail set) or fail (a finding in the fail set)."""
    exit_code: int
    first_bad_layer: str | None
    """First layer in forward order with any finding of severity error or warning."""
    first_nonfinite_layer: str | None
    """First layer whose output is NaN/Inf; else the layer nearest the output whose gradient is."""
    findings: dict[str, int]
    """Count per severity."""
    verdict: str


@dataclass(frozen=True)
class Report:
    schema_version: int
    gradcheck_version: str
    model: ModelInfo
    run: RunInfo
    layers: list[LayerReport]
    parameters: list[ParameterReport]
    findings: list[Finding]
    summary: Summary
    notes: list[str] = field(default_factory=list)
    ignored_findings: list[Finding] = field(default_factory=list)
    """Findings matched by an ignore rule: reported for the record, never part of the verdict."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON document as Python objects (what ``--format json`` writes)."""
        return encode(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The inverse of :meth:`to_dict` (re-rendering a saved report); keys unknown here are ignored,
        so reports from later releases of the same schema version still load. ValueError if malformed."""
        return decode(cls, data)


def _round(x: float) -> float:
    return float(f"{x:.7g}")


def encode(value: Any) -> Any:
    """Dataclasses, dicts, lists and floats -> JSON-ready objects (the rounding and non-finite rules above)."""
    if is_dataclass(value):
        out: dict[str, Any] = {}
        for f in fields(value):
            _put(out, f.name, getattr(value, f.name))
        return out
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            _put(out, str(key), item)
        return out
    if isinstance(value, (list, tuple, frozenset)):
        return [encode(v) for v in value]
    if isinstance(value, float):
        return _round(value) if math.isfinite(value) else None
    return value


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        out[key] = None
        out[f"{key}_nonfinite"] = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    else:
        out[key] = encode(value)


def decode(cls: type, data: Any) -> Any:
    """A JSON object -> the dataclass ``cls``, guided by its type hints (``null`` + ``<key>_nonfinite``
    becomes the non-finite float again)."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{cls.__name__} lacks the key {f.name!r}")
            continue
        values[f.name] = _decode(hints[f.name], data[f.name], data.get(f"{f.name}_nonfinite"))
    return cls(**values)


def _decode(annotation: Any, value: Any, nonfinite: Any = None) -> Any:
    if nonfinite in ("nan", "inf", "-inf"):
        return float(nonfinite)
    if value is None:
        return None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _decode(next(a for a in args if a is not type(None)), value)
    if is_dataclass(annotation):
        return decode(annotation, value)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        items = [_decode(args[0], v) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {type(value).__name__}")
        return {k: _decode(args[1], v, value.get(f"{k}_nonfinite")) for k, v in value.items() if not k.endswith("_nonfinite")}
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
