"""Frozen option and threshold objects shared by the engine, the rules and the CLI.

Every default here is a documented decision; the README's "Verdicts" section explains each one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from fnmatch import fnmatchcase
from typing import Any

from gradcheck_cli.diagnose.registry import FINDING_KINDS
from gradcheck_cli.errors import UsageError

DEFAULT_FAIL_ON: frozenset[str] = frozenset({"error"})
"""The default gate: every finding of severity error (exploding and vanishing gradients, exploding
activations, NaN/Inf, layers whose units are all dead or all identical)."""
GATE_TOKENS = ("error", "warning", "info")
"""Severities accepted in ``--fail-on`` beside kinds: each gates its own severity and the worse ones."""
LOSSES = ("auto", "cross-entropy", "mse", "sum", "projection", "random-target")
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
    chaos: float = 1.25
    """In a deep plain tanh stack (the init advice says gain 1, the edge of chaos), weights more than this
    times the advice are on the chaotic side: gain 5/3 measures 1.67 and fails to train at depth 30."""
    init_tolerance: float = 0.1
    """When the network's signals vanish (explode), a layer whose weights are more than this fraction
    smaller (larger) than recommended is flagged too: the trend is the evidence, the layer the cause."""
    min_depth: int = 3
    """Depth trends are judged only over at least this many weight layers."""
    layer_gain: float = 1.1
    """A steady per-layer gain above this (or below its inverse) along at least ``gain_depth`` layers is a
    vanishing/exploding finding even when the end-to-end ratio is under its threshold at this depth: a
    30-layer BatchNorm MLP at default init measures 1.20x per layer back (132x in all; a He-init ReLU
    MLP 1.009x)."""
    gain_depth: int = 8
    """Layers a steady gain must be measured over."""
    gain_total: float = 10.0
    """... and the end-to-end ratio it must already have reached (a 10-layer BatchNorm MLP, 3.5x, is not flagged)."""
    symmetry: float = 1e-6
    """||W - mean unit|| / ||W|| at or below which a layer's units count as identical (float32 copies and
    constant init measure exactly 0; random init about 1)."""

    divergence: float = 4.0
    """Over training: a loss above this many times its value at step 0 (or non-finite) is diverging. Noisy
    healthy runs stay under 2x; gradient descent past its stability limit grows geometrically."""
    train_gradient_growth: float = 10.0
    """Over training: a global gradient norm above this many times its healthy-phase median is exploding."""
    dying: float = 0.25
    """Over training: a rectifier layer losing more than this fraction of its units (alive on the data at
    step 0, dead at the end) is dying. Not lower: deep He-init ReLU MLPs that train well under Adam at
    lr 1e-3 lose 12-17% of a layer's units over 400 steps (benchmarks/verdicts/trainability.py)."""
    update_ratio_high: float = 0.1
    """Over training: a weight layer whose median |delta W|/|W| per step exceeds this rewrites 10% of itself
    every step (100x the usual ~1e-3): the learning rate is too high for it."""
    update_ratio_low: float = 1e-6
    """... and below this the layer is effectively frozen (1000x under the usual ~1e-3)."""

    def replace(self, **changes: float) -> Thresholds:
        """A copy with some thresholds changed; unknown names are a usage error naming the key."""
        known = {f.name for f in fields(self)}
        for key in changes:
            if key not in known:
                raise UsageError(f"unknown threshold {key!r}", hint=f"known: {', '.join(sorted(known))}")
        values = {f.name: getattr(self, f.name) for f in fields(self)} | changes
        return Thresholds(**values)


def parse_fail_on(text: str | None) -> frozenset[str]:
    """``"all"``, ``"none"`` or a comma list of severities and finding kinds -> the set that makes the
    exit code 1 (see :func:`gradcheck_cli.diagnose.registry.fails`)."""
    if text is None:
        return DEFAULT_FAIL_ON
    text = text.strip()
    if text == "all":
        return frozenset(FINDING_KINDS)
    if text in ("none", ""):
        return frozenset()
    kinds = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(kinds - set(FINDING_KINDS) - set(GATE_TOKENS))
    if unknown:
        raise UsageError(
            f"unknown finding kind {', '.join(map(repr, unknown))} in --fail-on",
            hint=f"use 'all', 'none', a severity (error, warning, info) or a comma list of: {', '.join(FINDING_KINDS)}",
        )
    return frozenset(kinds)


@dataclass(frozen=True)
class IgnoreRule:
    """Findings to drop: on layers whose name matches ``layer`` (a glob), of ``kinds`` (all when empty).

    Written ``GLOB`` or ``GLOB:kind,kind`` on the command line and in ``[tool.gradcheck] ignore``.
    Ignored findings are kept in the report (``ignored_findings``) but never change the exit code.
    """

    layer: str
    kinds: tuple[str, ...] = ()

    def matches(self, layer: str, kind: str) -> bool:
        return fnmatchcase(layer, self.layer) and (not self.kinds or kind in self.kinds)

    def __str__(self) -> str:
        return self.layer + (":" + ",".join(self.kinds) if self.kinds else "")


def parse_ignore(text: str) -> IgnoreRule:
    """``"head.*"`` or ``"encoder.*:dead_relu,saturated_activation"`` -> an :class:`IgnoreRule`.

    The text after the last ``:`` is read as kinds only when every item is a finding kind, so a
    layer name that itself holds a colon still works as a plain glob.
    """
    text = text.strip()
    if not text:
        raise UsageError("empty ignore rule", hint="use GLOB or GLOB:KIND[,KIND], e.g. 'head.*:dead_relu'")
    glob, sep, tail = text.rpartition(":")
    kinds = [k.strip() for k in tail.split(",") if k.strip()] if sep else []
    known = set(FINDING_KINDS) | {"all"}
    if kinds and all(k in known for k in kinds):
        return IgnoreRule(glob.strip() or "*", () if "all" in kinds else tuple(dict.fromkeys(kinds)))
    if any(k in known for k in kinds):
        unknown = ", ".join(repr(k) for k in kinds if k not in known)
        raise UsageError(f"unknown finding kind {unknown} in ignore rule {text!r}", hint=f"kinds: {', '.join(FINDING_KINDS)}")
    return IgnoreRule(text)  # no kinds after a colon: the colon belongs to the layer name


@dataclass(frozen=True)
class AnalyzeOptions:
    """Everything that shapes one analysis run, besides the model and the data themselves."""

    loss: str = "auto"
    """auto | cross-entropy | mse | sum | projection | random-target (see loss.py for why projection is the
    default at one step, and random-target when training without targets)."""
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
    ignore: tuple[IgnoreRule, ...] = ()
    """Findings to leave out of the verdict (per-layer globs, optionally per kind)."""
    config: str | None = None
    """The config file these options came from in part (recorded in the report)."""
    sample_stats: int | None = None
    """Forward statistics on this many seeded units (features/channels) per layer instead of all: a cheap
    mode for huge activations. Gradients and parameters are always measured in full. Off by default."""
    distributed: str = "none"
    """none | auto | ddp | fsdp: run under torchrun across processes (analysis/distributed.py)."""
    shard_by: str | None = None
    meta_init: bool = False
    """FSDP: build the factory's model on the meta device and materialise each rank's shards only."""
    """FSDP: shard the submodules matching this glob (default: the blocks of every ModuleList)."""
    training: Any = None
    """A :class:`gradcheck_cli.training.TrainOptions`: train a copy for that many steps and report the
    series (``--steps``); None: the one-shot analysis only."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise UsageError(f"unknown loss {self.loss!r}", hint=f"use one of: {', '.join(LOSSES)}")
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r}", hint="use 'train' or 'eval'")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"batch size must be at least 1, got {self.batch_size}")
        if self.batches < 1:
            raise UsageError(f"--batches must be at least 1, got {self.batches}")
        if self.sample_stats is not None and self.sample_stats < 1:
            raise UsageError(f"--sample-stats must be at least 1, got {self.sample_stats}")
        unknown = sorted(set(self.fail_on) - set(FINDING_KINDS) - set(GATE_TOKENS))
        if unknown:
            raise UsageError(f"unknown finding kind(s) in fail_on: {', '.join(unknown)}")
        rules = (self.ignore,) if isinstance(self.ignore, (str, IgnoreRule)) else tuple(self.ignore)
        object.__setattr__(self, "ignore", tuple(r if isinstance(r, IgnoreRule) else parse_ignore(r) for r in rules))


@dataclass(frozen=True)
class DataSpec:
    """Where the data sample comes from: a file or given tensors, else random inputs of these shapes
    (else the model's own: stored example inputs, or the shapes an ONNX graph declares)."""

    inputs: Any = None
    """A data file path, a tensor, a tuple of positional tensors or a dict of keyword tensors."""
    target: Any = None
    """Targets/labels: a file path or a tensor (None: the projection loss needs none)."""
    input_shapes: tuple[tuple[int, ...], ...] = ()
    dtype: str = "float32"
    """dtype of random inputs."""
    input_range: tuple[int, int] | None = None
    """Random integer inputs in [low, high) (token ids)."""
