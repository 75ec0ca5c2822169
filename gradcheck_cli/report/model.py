"""The report: frozen dataclasses (:func:`~gradcheck_cli.records.record`), one per part of the JSON document (:mod:`.codec` writes and reads it).

``SCHEMA_VERSION`` is bumped on any breaking change to keys or meanings; additions of new keys keep
the version (they get defaults, so older reports still load).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from gradcheck_cli.analysis.options import IgnoreRule
from gradcheck_cli.records import record

SCHEMA_VERSION = 1


@record
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


@record
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
    """|grad W| / |W| (L2 norms of the weight's gradient and of the weight): the relative step one SGD update
    with learning rate 1 would take. It carries the loss's scale (the projection loss sum(out * r) is a sum over
    every output element, so a small GPT-2 measures thousands), so it cannot be read against the ~1e-3 per-step rule of
    thumb; :attr:`relative_ratio` can."""
    relative_ratio: float | None = None
    """weight_ratio / the median weight_ratio of the model's Linear/Conv layers: the loss's scale cancels. 1 is a
    typical layer; under SGD, which steps every layer by lr x weight_ratio, a layer at 10 moves 10x further,
    relative to its weights, than the median layer, so with a learning rate that moves the median layer by the
    usual ~1e-3 of its norm per step this layer moves by ~1e-3 x relative_ratio. None without a weight gradient
    (and in reports written before it existed)."""


@record
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
    call: str = ""
    """The one line of PyTorch that applies the recommendation (``nn.init.kaiming_normal_(w, ...)``)."""
    note: str | None = None
    """Why the recommendation departs from the textbook scheme (depth-aware advice)."""
    unit_spread: float | None = None
    """||W - the mean unit's weights|| / ||W||: how different the units' incoming weights are (about 1 for
    random init, 0 when every unit has the same weights; 0 for an all-zero weight)."""
    informational: bool = False
    """No finding backs this advice: the network has normalisation layers (which reset the activation scale, so
    a weight scale off the textbook one is not a problem by itself, README "Verdicts"), and neither an
    ``init_mismatch`` finding nor a vanishing/exploding trend names this layer or its role. Renderers show it as
    information, not as something to apply."""


@record
class LayerTopology:
    """Where a layer sits in the model's graph (README "Verdicts": main path and branches)."""

    path: str
    """``main``: every signal between a source (the first layer, an embedding) and the loss crosses it;
    ``branch``: a side branch that merges back by addition (residual branch, attention q/k/v, gate)."""
    joins: str | None = None
    """For a branch: the first main-path layer after the point where it merges back."""
    role: str | None = None
    """The layer's name with block indices as ``*`` (``h.*.attn.c_attn``) when it repeats across blocks:
    layers of one role are compared across blocks."""


@record
class TimeProfile:
    """A recurrent layer's backward signal through time (measure/through_time.py)."""

    steps: int
    grad_rms: list[float]
    """RMS of d(r . h_T)/dx_t at every step t (r: a seeded random projection of the last step's output):
    how much of step t's input still reaches the last step."""
    ratio: float
    """grad_rms at the first step / at the last: the through-time analogue of the depth ratio."""


@record
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
    topology: LayerTopology | None = None
    """None when the graph could not be read (no gradient reached the layer)."""
    per_sample: int | None = None
    """Output elements per sample: the output's size over the model input's batch dimension (windowed
    attention folds windows into dim 0, so dim 0 is not the batch)."""
    time: TimeProfile | None = None
    """For nn.RNN/LSTM/GRU layers: the backward signal at every time step."""


@record
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


@record
class Finding:
    kind: str
    severity: str
    layer: str
    value: float
    threshold: float
    message: str
    hint: str
    step: int | None = None
    """For a finding over training (``--steps``): the optimiser step it names (where the growth began,
    the first non-finite step); None for a finding about the model at the analysed step."""


@record
class LayerSeries:
    """One layer over the logged training steps (aligned with :attr:`TrainingReport.logged_steps`);
    None where the layer was not measured at that step (no gradient reached it, no weight)."""

    name: str
    kind: str
    grad_rms: list[float | None]
    """RMS of dLoss/d(layer output) at each logged step."""
    weight_ratio: list[float | None] = field(default_factory=list)
    """|grad W| / |W| of the layer's weight (as the optimiser saw it, after any clipping)."""
    update_ratio: list[float | None] = field(default_factory=list)
    """|delta W| / |W|: the step the optimiser actually took, relative to the weight."""
    dead: list[float | None] = field(default_factory=list)
    """Rectifier layers: fraction of units that were zero for every sample of the step's batch."""
    saturation: list[float | None] = field(default_factory=list)
    """Sigmoid/tanh layers: fraction of outputs within 0.01 of an asymptote."""
    nonfinite: list[bool] = field(default_factory=list)
    """The layer's output held NaN/Inf at that step (a non-finite gradient is a non-finite ``grad_rms``;
    inf also when its squares overflow float32, i.e. values beyond ~1.8e19)."""


@record
class TrainingAdvice:
    clip_grad_norm: float | None
    """A ``max_norm`` for ``torch.nn.utils.clip_grad_norm_`` (README "Training": the median global gradient
    norm of the healthy phase); None when no healthy phase was logged."""
    clip_reason: str
    lr_bound: float | None = None
    """When the run diverged: a learning rate below which it is expected to be stable."""
    lr_reason: str | None = None


@record
class TrainingReport:
    """``analyze --steps N``: the model trained for N optimiser steps on a copy; every ``every``-th logged."""

    steps: int
    """Optimiser steps requested."""
    completed: int
    """Steps taken: fewer than ``steps`` when training stopped at a non-finite loss."""
    every: int
    optimizer: str
    lr: float
    weight_decay: float
    momentum: float | None
    clip_grad_norm: float | None
    """The clipping applied during this run (None: none)."""
    data: str
    """How batches were fed: the sample's batches in a fixed cycle, or seeded random inputs."""
    loss: list[float]
    """The loss at every step (before that step's update)."""
    logged_steps: list[int]
    grad_norm: list[float]
    """Global L2 norm of all parameter gradients at each logged step, before clipping."""
    layers: list[LayerSeries]
    advice: TrainingAdvice
    dying: dict[str, float] = field(default_factory=dict)
    """Rectifier layer -> fraction of its units alive on the data at step 0 and dead after the last step."""
    dying_after: int | None = None
    """The step after which ``dying`` was measured: the last step (``--steps``: on every batch of the cycle),
    or the last logged step (Monitor: on that step's batch against the first logged step's)."""
    lr_scan: dict[str, bool] = field(default_factory=dict)
    """``--lr-scan``: learning rate (as text) -> whether a run at it stayed stable."""


@record
class ModelInfo:
    source: str
    format: str
    parameters: int
    trainable_parameters: int


@record
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
    threads: int | None = None
    """``torch.get_num_threads()`` during the run: CPU reductions split differently with another count, so
    the last digits of the numbers can move with it (None: a report from before this was recorded)."""
    torch_version: str | None = None
    """``torch.__version__`` of the run (None: not recorded)."""
    python_version: str | None = None
    """The Python version of the run, e.g. ``3.11.7`` (None: not recorded)."""
    cuda_version: str | None = None
    """The CUDA version torch was built with (``torch.version.cuda``); None for a CPU build or when not recorded."""
    device_name: str | None = None
    """What ``device`` was: the GPU's name for CUDA, the processor for the CPU (None: unknown or not recorded)."""
    world_size: int = 1
    """Processes the run was split across (``--distributed``; 1: a single process)."""
    distributed: str = "none"
    """The strategy of a distributed run: ``ddp`` or ``fsdp`` (``none``: a single process)."""


@record
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


@record
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
    paths: list[list[str]] = field(default_factory=list)
    """Each main path (layer names, forward order): from a source to the loss, through layers every signal crosses."""
    training: TrainingReport | None = None
    """``--steps N``: the time series over training; the layer rows above are the model at step 0."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON document as Python objects (what ``--format json`` writes)."""
        from gradcheck_cli.report.codec import encode

        return encode(self)

    def to_json(self) -> str:
        from gradcheck_cli.report.codec import to_json

        return to_json(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The inverse of :meth:`to_dict` (re-rendering a saved report); keys unknown here are ignored,
        so reports from later releases of the same schema version still load. ValueError if malformed."""
        from gradcheck_cli.report.codec import decode

        return decode(cls, data)
