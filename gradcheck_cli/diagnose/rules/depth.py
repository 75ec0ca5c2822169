"""Depth trends: how the forward and backward signals change across depth, judged where depth is.

Vanishing/exploding is judged on the *trend* of the signals (an end-to-end ratio and the per-layer gain
it implies) plus absolute guards -- not on weight-gradient norms, which stay nearly flat even when both
signals decay (THEORY.md section 2). Two kinds of sequence carry depth (README "Verdicts"):

- a **main path** (measure/topology.py): the weight layers every signal between a source and the loss
  crosses, in forward order; a plain MLP is one main path;
- a **role across blocks**: the weight layers of one role in repeated blocks (``h.*.attn.c_attn``), on
  the branches of a residual stack. A branch's own scale is a design choice (attention at init,
  LayerScale 1e-6), but the same role compared block by block measures how the residual stream that
  feeds them changes with depth.

A branch layer is never compared with a main-path layer or with a layer of another role. Without a
topology (a saved report of an older release, synthetic rows) the weight layers form one chain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gradcheck_cli.diagnose.evaluate import Evidence
from gradcheck_cli.diagnose.rules import finding, finite, shown
from gradcheck_cli.layers import WEIGHT_KINDS
from gradcheck_cli.report.model import Finding, LayerReport

SEGMENT_JUMP = 8.0
"""A change of elements-per-sample larger than this between consecutive layers of a sequence starts a
new segment. Global pooling (64x32x32 -> 64) or a classifier head (512 -> 10) rescales per-element
signals by design -- a mean over N positions hands each 1/N of the gradient -- so trends are
compared only between layers of similar size (stride-2 stages change it by 2x and stay together)."""

Signal = Callable[[LayerReport], "float | None"]
Reference = Callable[[list[LayerReport]], LayerReport]


def forward_signal(layer: LayerReport) -> float | None:
    """The input-dependent activation scale (signal std), or the plain std where it is unmeasurable."""
    a = layer.activation
    if a is None:
        return None
    return a.signal_std if a.signal_std is not None else a.std


def backward_signal(layer: LayerReport) -> float | None:
    """RMS of dLoss/d(output) at the layer."""
    return layer.grad.output_rms


def output_std(layer: LayerReport) -> float | None:
    """The plain std of the layer's output (biases and all): what overflows."""
    return layer.activation.std if layer.activation else None


def _measured(layers: Sequence[LayerReport]) -> list[LayerReport]:
    """Weight layers with finite forward and backward signals, in forward order."""
    return [layer for layer in layers
            if layer.kind in WEIGHT_KINDS and finite(forward_signal(layer), layer.grad.output_rms)]


@dataclass(frozen=True)
class DepthSequence:
    """Layers in depth order: a main path's weight layers, or one role's layers block by block."""

    layers: list[LayerReport]
    role: str | None = None
    """None along a main path; the role (``h.*.attn.c_attn``) for one role across blocks."""


def sequences(e: Evidence) -> list[DepthSequence]:
    """Every main path, and every role repeated across at least ``min_depth`` blocks on the branches
    (once per report: see ``Evidence.derived``)."""
    if "sequences" not in e.derived:
        e.derived["sequences"] = _sequences(e)
    return e.derived["sequences"]


def segmented(e: Evidence) -> list[tuple[DepthSequence, list[list[LayerReport]]]]:
    """Each of :func:`sequences` with its :func:`segments`, computed once per report."""
    if "segmented" not in e.derived:
        e.derived["segmented"] = [(sequence, segments(sequence.layers)) for sequence in sequences(e)]
    return e.derived["segmented"]


def _sequences(e: Evidence) -> list[DepthSequence]:
    if not e.paths:
        return [DepthSequence(_measured(e.layers))]
    out = [DepthSequence(_measured(path)) for path in e.paths]
    by_role: dict[str, list[LayerReport]] = {}
    for layer in _measured(e.layers):
        top = layer.topology
        if top is not None and top.path == "branch" and top.role is not None:
            by_role.setdefault(top.role, []).append(layer)
    out += [DepthSequence(members, role) for role, members in by_role.items()]
    return out


def per_sample(layer: LayerReport) -> int:
    if layer.per_sample is not None:
        return layer.per_sample
    return math.prod(layer.shape[1:]) if layer.shape and len(layer.shape) > 1 else 1


def segments(layers: list[LayerReport]) -> list[list[LayerReport]]:
    out: list[list[LayerReport]] = []
    for layer in layers:
        if out:
            a, b = per_sample(out[-1][-1]), per_sample(layer)
            if max(a, b) / max(min(a, b), 1) <= SEGMENT_JUMP:
                out[-1].append(layer)
                continue
        out.append([layer])
    return out


def gain(ratio: float, steps: int) -> float:
    return ratio ** (1.0 / steps) if ratio > 0 and steps > 0 else 0.0


@dataclass(frozen=True)
class Extreme:
    """The layer whose signal is furthest from its segment's reference layer, one way."""

    ratio: float
    layer: LayerReport
    reference: LayerReport
    segment: list[LayerReport]
    sequence: DepthSequence

    @property
    def steps(self) -> int:
        return abs(_position(self.segment, self.layer) - _position(self.segment, self.reference))

    def where(self) -> str:
        per = f"{gain(self.ratio, self.steps):.3g}x per"
        if self.sequence.role is None:
            return f"over {self.steps + 1} weight layers ({per} layer)"
        return f"across {self.steps + 1} blocks of {self.sequence.role} ({per} block)"


def _position(segment: list[LayerReport], layer: LayerReport) -> int:
    """Where ``layer`` (the object itself) is in ``segment``: ``list.index`` would compare rows field by field."""
    return next(i for i, member in enumerate(segment) if member is layer)


def extremes(e: Evidence, value: Signal, reference_of: Reference) -> tuple[Extreme | None, Extreme | None]:
    """Most extreme ratios below and above 1 over every segment of at least ``min_depth`` layers
    (once per signal and reference: the vanishing and exploding kinds of a signal share them)."""
    key = ("extremes", value, reference_of)
    if key not in e.derived:
        e.derived[key] = _extremes(e, value, reference_of)
    return e.derived[key]


def _extremes(e: Evidence, value: Signal, reference_of: Reference) -> tuple[Extreme | None, Extreme | None]:
    low = high = None  # (ratio, layer, reference, segment, sequence): an Extreme is built for the two winners only
    for sequence, parts in segmented(e):
        for segment in parts:
            reference = reference_of(segment)
            scale = value(reference) if len(segment) >= e.thresholds.min_depth else None
            if not scale:
                continue
            for layer in segment:
                ratio = value(layer) / scale  # type: ignore[operator]
                if low is None or ratio < low[0]:
                    low = (ratio, layer, reference, segment, sequence)
                if high is None or ratio > high[0]:
                    high = (ratio, layer, reference, segment, sequence)
    return (Extreme(*low) if low is not None else None), (Extreme(*high) if high is not None else None)


def nearest_output(segment: list[LayerReport]) -> LayerReport:
    """The backward signal's reference: the loss's scale, nearest the output."""
    return segment[-1]


def nearest_input(segment: list[LayerReport]) -> LayerReport:
    """The forward signal's reference: the data's own scale, nearest the input."""
    return segment[0]


@dataclass(frozen=True)
class Trend:
    """One depth-trend finding kind: which signal, against which reference layer, which way, and what to say.

    ``text`` formats ``layer``, ``ref``, ``ratio`` and ``where``. With ``absolute`` set, a layer whose
    ``absolute`` value is above the threshold field ``absolute_limit`` is a finding whatever the trend
    (when the trend itself found nothing): the guard against a loss or input scale that is simply huge.
    """

    kind: str
    signal: Signal
    reference: Reference
    vanishing: bool
    """True: the ratio below the limit is the finding; False: above it."""
    limit: str
    """The Thresholds field of the ratio."""
    text: str
    absolute: Signal | None = None
    absolute_limit: str = ""
    absolute_text: str = ""
    time: bool = False
    """Also judge recurrent layers through time (the backward-signal kinds)."""

    def find(self, e: Evidence) -> list[Finding]:
        depth = self.across_depth(e)
        return depth + (through_time(e, self.kind, self.vanishing) if self.time else [])

    def across_depth(self, e: Evidence) -> list[Finding]:
        low, high = extremes(e, self.signal, self.reference)
        extreme, limit = (low if self.vanishing else high), getattr(e.thresholds, self.limit)
        if extreme is not None and (extreme.ratio < limit if self.vanishing else extreme.ratio > limit):
            message = self.text.format(layer=shown(extreme.layer), ref=shown(extreme.reference), ratio=extreme.ratio,
                                       where=extreme.where())
            return [finding(self.kind, extreme.layer.name, extreme.ratio, limit, message)]
        steady = self.steady_gain(e)
        if steady or self.absolute is None:
            return steady
        return absolute_finding(self.kind, e.layers, self.absolute, getattr(e.thresholds, self.absolute_limit),
                                self.absolute_text)

    def steady_gain(self, e: Evidence) -> list[Finding]:
        """A per-layer gain that holds steadily along a long segment (least-squares fit of the log signal,
        R^2 >= 0.9), in this trend's direction, though the end-to-end ratio is under its threshold."""
        t = e.thresholds
        best: tuple[float, list[LayerReport], float] | None = None
        for sequence, parts in segmented(e):
            if sequence.role is not None:
                continue  # along main paths only: a role across blocks is a few points, not a steady fit
            for segment in parts:
                if len(segment) < t.gain_depth:
                    continue
                fit = _log_slope([self.signal(layer) for layer in segment])  # type: ignore[misc]
                if fit is None:
                    continue
                per_layer, r2 = fit
                # the gain going towards the reference: back towards the input for gradients (reference last)
                toward = per_layer if self.reference is nearest_input else 1.0 / per_layer
                total = toward ** (len(segment) - 1)
                growing = toward > t.layer_gain and total > t.gain_total
                shrinking = toward < 1.0 / t.layer_gain and total < 1.0 / t.gain_total
                if r2 >= 0.9 and (shrinking if self.vanishing else growing) and (best is None or abs(math.log(toward)) > abs(math.log(best[0]))):
                    best = (toward, segment, total)
        if best is None:
            return []
        toward, segment, total = best
        far, ref = (segment[0], segment[-1]) if self.reference is nearest_output else (segment[-1], segment[0])
        direction = "back towards the input" if self.reference is nearest_output else "towards the output"
        limit = t.layer_gain if not self.vanishing else 1.0 / t.layer_gain
        message = (f"the {'backward' if self.reference is nearest_output else 'forward'} signal changes {toward:.3g}x per layer "
                   f"{direction}, steadily over {len(segment)} weight layers ({total:.3g}x from {shown(ref)} to {shown(far)}): "
                   f"under the end-to-end threshold at this depth, but it compounds ({toward ** 49:.3g}x over 50 layers)")
        return [finding(self.kind, far.name, toward, limit, message)]


def _log_slope(values: list[float]) -> tuple[float, float] | None:
    """(exp(slope), R^2) of a least-squares line through log(values) against position."""
    if any(v is None or not v > 0 or not math.isfinite(v) for v in values):
        return None
    ys = [math.log(v) for v in values]
    n = len(ys)
    mx, my = (n - 1) / 2, sum(ys) / n
    sxx = sum((i - mx) ** 2 for i in range(n))
    sxy = sum((i - mx) * (y - my) for i, y in enumerate(ys))
    syy = sum((y - my) ** 2 for y in ys)
    slope = sxy / sxx
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0 else 0.0
    return math.exp(slope), r2


def absolute_finding(kind: str, layers: Sequence[LayerReport], value: Signal, limit: float, text: str) -> list[Finding]:
    """The loudest layer whose ``value`` is above ``limit`` whatever the trend (NaN compares False)."""
    loud = [layer for layer in layers if (value(layer) or 0.0) > limit]
    if not loud:
        return []
    worst = max(loud, key=lambda layer: value(layer))  # type: ignore[arg-type, return-value]
    measured = value(worst)
    return [finding(kind, worst.name, measured, limit, text.format(layer=shown(worst), value=measured))]  # type: ignore[arg-type]



RECURRENT_HINT = ("set the LSTM forget-gate bias to 1 or more (Jozefowicz et al. 2015), use an orthogonal recurrent "
                  "init, clip gradients (torch.nn.utils.clip_grad_norm_) or shorten the BPTT window; for long "
                  "ranges consider attention or a gated state-space layer")


def time_series(layers: Sequence[LayerReport]) -> list[tuple[LayerReport, list[float], str]]:
    """(layer, backward signal per step, how it was measured) for every recurrent layer: the probe of an
    nn.RNN/LSTM/GRU, or the rows of a cell called once per step (``cell``, ``cell#2``, ...)."""
    out = [(l, l.time.grad_rms, "probe") for l in layers if l.time is not None and l.time.steps >= 2]
    calls: dict[str, list[LayerReport]] = {}
    for layer in layers:
        if layer.kind == "rnn" and layer.time is None:
            calls.setdefault(layer.name.split("#")[0], []).append(layer)
    for rows in calls.values():
        values = [r.grad.output_rms for r in rows]
        if len(rows) >= 3 and all(finite(v) and v > 0 for v in values):  # type: ignore[operator]
            out.append((rows[0], values, "calls"))  # type: ignore[arg-type]
    return out


def through_time(e: Evidence, kind: str, vanishing: bool) -> list[Finding]:
    """Vanishing/exploding across time steps, judged exactly as across depth (first step vs last)."""
    limit = e.thresholds.vanishing_gradient_ratio if vanishing else e.thresholds.exploding_gradient_ratio
    findings = []
    for layer, values, how in time_series(e.layers):
        steps = len(values)
        ratio = values[0] / values[-1] if values[-1] else math.inf
        if not (ratio < limit if vanishing else ratio > limit):
            continue
        per_step = gain(ratio, steps - 1)
        what = ("the part of the first step's input that reaches the last step" if how == "probe"
                else "the backward signal reaching the first call")
        verb = "shrinks" if vanishing else "grows"
        message = (f"through time: {what} of {shown(layer)} {verb} to {ratio:.2e} of the last step's over {steps} steps "
                   f"({per_step:.3g}x per step): " + ("the layer cannot learn dependencies that long" if vanishing
                                                      else "updates from early steps will be huge and unstable"))
        findings.append(finding(kind, layer.name, ratio, limit, message, hint=RECURRENT_HINT))
    return findings
