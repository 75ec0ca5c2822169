"""Frozen option and threshold objects shared by the engine, the rules and the CLI.

Every default here is a documented decision; the README's "Verdicts" section explains each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from gradcheck_cli.errors import UsageError

FINDING_KINDS: tuple[str, ...] = (
    "vanishing_gradient",
    "exploding_gradient",
    "vanishing_activation",
    "exploding_activation",
    "dead_relu",
    "saturated_activation",
    "not_zero_centred",
    "nonfinite",
    "init_mismatch",
)
DEFAULT_FAIL_ON: frozenset[str] = frozenset({"exploding_gradient", "nonfinite"})
LOSSES = ("auto", "cross-entropy", "mse", "sum", "projection")
MODES = ("train", "eval")


@dataclass(frozen=True)
class Thresholds:
    """Where a measurement becomes a finding. Defaults give zero findings on healthy models at init."""

    vanishing_gradient_ratio: float = 1e-3
    """Backward-signal RMS at the first weight layer / at the last one, below which gradients vanish.
    A 10-layer sigmoid MLP sits near 1e-6; a He-init ReLU MLP near 1."""
    exploding_gradient_ratio: float = 1e3
    """The same ratio, above which gradients explode (the input-side layers get 1000x the signal)."""
    gradient_abs_max: float = 1e6
    """Any layer's output-gradient RMS above this is exploding whatever the trend (unit-scale loss)."""
    vanishing_activation_ratio: float = 1e-3
    """Activation std at the last weight layer / at the first one, below which the forward signal vanishes
    (ReLU + Xavier over 30 layers measures 3.4e-5)."""
    exploding_activation_ratio: float = 1e3
    """The same ratio, above which the forward signal explodes."""
    activation_abs_max: float = 1e6
    """Any layer's activation std above this is exploding (float16 overflows at 65504)."""
    dead_ratio: float = 0.5
    """Fraction of a rectifier's units that never fire on the data, above which the layer has dead units.
    Not lower: He-init ReLU MLPs of depth 10-30 measure 12-44% never-firing units on 256 random samples at
    init, because all-positive ReLU outputs feed each unit a common offset that grows with depth."""
    saturation: float = 0.2
    """Fraction of sigmoid/tanh outputs within 0.01 of an asymptote, above which the layer is saturated."""
    centring: float = 1.0
    """|mean|/std of an activation feeding a weight layer, above which it is not zero-centred.
    Sigmoid at init is ~2.4, ReLU ~0.69 (accepted practice), tanh ~0."""
    init_ratio: float = 4.0
    """current std / recommended std outside [1/init_ratio, init_ratio] is an init mismatch on its own."""
    init_tolerance: float = 0.1
    """When the network's signals vanish (explode), a layer whose weights are more than this fraction
    smaller (larger) than recommended is flagged too: the trend is the evidence, the layer the cause."""
    min_depth: int = 3
    """Depth trends are judged only over at least this many weight layers."""

    def replace(self, **changes: float) -> Thresholds:
        """A copy with some thresholds changed; unknown names are a usage error naming the key."""
        known = {f.name for f in fields(self)}
        for key in changes:
            if key not in known:
                raise UsageError(f"unknown threshold {key!r}", hint=f"known: {', '.join(sorted(known))}")
        values = {f.name: getattr(self, f.name) for f in fields(self)} | changes
        return Thresholds(**values)


def parse_fail_on(text: str | None) -> frozenset[str]:
    """``"all"``, ``"none"`` or a comma list of finding kinds -> the set that makes the exit code 1."""
    if text is None:
        return DEFAULT_FAIL_ON
    text = text.strip()
    if text == "all":
        return frozenset(FINDING_KINDS)
    if text in ("none", ""):
        return frozenset()
    kinds = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(kinds - set(FINDING_KINDS))
    if unknown:
        raise UsageError(
            f"unknown finding kind {', '.join(map(repr, unknown))} in --fail-on",
            hint=f"use 'all', 'none' or a comma list of: {', '.join(FINDING_KINDS)}",
        )
    return frozenset(kinds)


@dataclass(frozen=True)
class AnalyzeOptions:
    """Everything that shapes one analysis run, besides the model and the data themselves."""

    loss: str = "auto"
    """auto | cross-entropy | mse | sum | projection (see losses.py for why projection is the default)."""
    batch_size: int | None = None
    """Samples per pass; None means the whole sample is one batch."""
    batches: int = 1
    """How many batches (instrumented forward+backward passes) to aggregate."""
    device: str = "cpu"
    """cpu | cuda | cuda:N | auto."""
    seed: int = 0
    """Seeds random inputs, the projection loss and the model's own randomness (dropout)."""
    mode: str = "train"
    """train (BatchNorm uses batch statistics, Dropout active -- what training sees) or eval."""
    fail_on: frozenset[str] = DEFAULT_FAIL_ON
    """Finding kinds that make the exit code 1."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    functional: bool = True
    """Also observe activations called as functions (F.relu, torch.sigmoid) inside modules."""
    verify: bool = False
    """ONNX only: compare the interpreter's forward output with onnxruntime's first."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise UsageError(f"unknown loss {self.loss!r}", hint=f"use one of: {', '.join(LOSSES)}")
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r}", hint="use 'train' or 'eval'")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}")
        if self.batches < 1:
            raise UsageError(f"--batches must be at least 1, got {self.batches}")
        unknown = sorted(set(self.fail_on) - set(FINDING_KINDS))
        if unknown:
            raise UsageError(f"unknown finding kind(s) in fail_on: {', '.join(unknown)}")
