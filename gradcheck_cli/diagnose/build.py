"""Raw measurements -> the Report: per-layer rows, init advice, findings and the summary."""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import asdict
from typing import TYPE_CHECKING

from gradcheck_cli import __version__
from gradcheck_cli.diagnose.init_advice import WeightSummary, deep_tanh_stack, init_advice
from gradcheck_cli.errors import EXIT_FINDINGS, EXIT_OK
from gradcheck_cli.records import replace
from gradcheck_cli.layers import NORM_KINDS, WEIGHT_KINDS, LayerInfo
from gradcheck_cli.loading.base import LoadedModel
from gradcheck_cli.analysis.options import AnalyzeOptions
from gradcheck_cli.report.model import (
    SCHEMA_VERSION,
    ActivationStats,
    Finding,
    GradStats,
    LayerReport,
    LayerTopology,
    TimeProfile,
    ModelInfo,
    ParameterReport,
    Report,
    RunInfo,
    Summary,
)
from gradcheck_cli.diagnose.evaluate import Evidence, evaluate
from gradcheck_cli.diagnose.over_training import training_report
from gradcheck_cli.diagnose.registry import SEVERITIES, fails
from gradcheck_cli.diagnose.rules.dead_relu import too_few_samples
from gradcheck_cli.measure.collector import ForwardSummary, LayerStats
from gradcheck_cli.measure.measurements import Measurements, ParamMeasure
from gradcheck_cli.measure.topology import Topology, roles

if TYPE_CHECKING:  # the training loop (and what it imports) only for --steps runs
    from gradcheck_cli.training.loop import TrainingRun


def build_report(loaded: LoadedModel, m: Measurements, options: AnalyzeOptions, *, notes: list[str], device: str, loss: str,
                 samples: int | None, batch_size: int | None, batches: int, training: TrainingRun | None = None) -> Report:
    """``training``: a run of ``--steps``; its series and findings join the step-0 rows."""
    display = loaded.display_names
    by_name = {p.name: p for p in m.params}
    for p in m.params:
        for alias in p.aliases:
            by_name.setdefault(alias, p)
    infos = [s.info for s in m.layers] + _unobserved(m, by_name, display)
    stats = {s.info.index: s for s in m.layers}
    batch = min((n for n in (batch_size, samples) if n), default=None)  # samples per pass: the first batch's size
    places = _places(infos, m.topology)
    deep_tanh = deep_tanh_stack(infos)
    median = _median_weight_ratio(infos, by_name)
    layers = [_layer(position, stats.get(info.index), infos, by_name, options, places.get(info.index), batch, deep_tanh,
                     median) for position, info in enumerate(infos)]
    paths = [[layers[i] for i in path] for path in m.topology.paths]
    series = training_report(training, options.thresholds) if training is not None else None
    evidence = Evidence(layers, options.thresholds, paths=paths, training=series)
    findings, ignored = _split_ignored(evaluate(evidence), options)
    layers = _mark_unbacked_advice(layers, findings + ignored)
    owner = {name: layer.name for info, layer in zip(infos, layers) for name in info.params.values()}
    parameters = [_parameter(p, owner, display) for p in m.params]
    summary = _summary(layers, findings, options, len(ignored))
    return Report(
        schema_version=SCHEMA_VERSION,
        gradcheck_version=__version__,
        model=ModelInfo(loaded.source, loaded.format, sum(p.numel for p in m.params),
                        sum(p.numel for p in m.params if p.requires_grad)),
        run=RunInfo(device, loss, options.mode, batches, batch_size, samples, options.seed,
                    sorted(options.fail_on), asdict(options.thresholds), list(options.ignore), options.config,
                    options.sample_stats, **_environment(device), **_world(options)),
        layers=layers,
        parameters=parameters,
        findings=findings,
        summary=summary,
        notes=notes + _sampling_note(options) + (training.notes if training is not None else []),
        ignored_findings=ignored,
        paths=[[layer.name for layer in path] for path in paths],
        training=series,
    )


def _weight_ratio(info: LayerInfo, params: dict[str, ParamMeasure]) -> float | None:
    """The layer's weight-gradient norm over its weight norm (None without a weight gradient)."""
    weight = params.get(info.params.get("weight", ""))
    if weight is None or weight.grad_norm is None or not weight.weight_norm:
        return None
    return weight.grad_norm / weight.weight_norm


def _median_weight_ratio(infos: list[LayerInfo], params: dict[str, ParamMeasure]) -> float | None:
    """What ``grad.relative_ratio`` divides by: the median weight_ratio of the Linear/Conv layers (of every
    layer with a weight gradient when there are none), so the loss's own scale cancels."""
    def usable(value: float | None) -> bool:
        return value is not None and math.isfinite(value) and value > 0

    ratios = [(info.kind in WEIGHT_KINDS, _weight_ratio(info, params)) for info in infos]
    pool = [r for weighted, r in ratios if weighted and usable(r)] or [r for _, r in ratios if usable(r)]
    return statistics.median(pool) if pool else None  # type: ignore[type-var]


_TREND_KINDS = frozenset({"vanishing_gradient", "exploding_gradient", "vanishing_activation", "exploding_activation"})


def _mark_unbacked_advice(layers: list[LayerReport], findings: list[Finding]) -> list[LayerReport]:
    """Fill ``init.informational``: in a network with normalisation layers, advice that no init_mismatch finding
    and no depth trend (on the layer or its role) backs is information only (README "Verdicts")."""
    if not any(l.kind in NORM_KINDS for l in layers):
        return layers
    role = {l.name: l.topology.role for l in layers if l.topology is not None and l.topology.role}
    backed = {f.layer for f in findings if f.kind == "init_mismatch"}
    trend = {f.layer for f in findings if f.kind in _TREND_KINDS}
    trend_roles = {role[name] for name in trend if name in role}

    def unbacked(l: LayerReport) -> bool:
        return l.name not in backed and l.name not in trend and (role.get(l.name) is None or role[l.name] not in trend_roles)

    return [replace(l, init=replace(l.init, informational=True))
            if l.init is not None and unbacked(l) else l for l in layers]


def _world(options: AnalyzeOptions) -> dict[str, object]:
    """The process group this run was split across, if any (read where it is: analysis/distributed.py)."""
    if options.distributed == "none":
        return {}
    import torch.distributed as dist

    if not dist.is_initialized():
        return {}
    strategy = "ddp" if options.distributed == "auto" else options.distributed
    return {"world_size": dist.get_world_size(), "distributed": strategy}


def _places(infos: list[LayerInfo], topology: Topology) -> dict[int, LayerTopology]:
    """Row index -> its place in the graph, for the rows the topology read (observed rows are the
    first ``len(rows)`` infos, so a row index is also its position)."""
    if not topology.known:
        return {}
    role = roles([info.name for info in infos if info.observable])
    places = {}
    for info in infos:
        if not info.observable:
            continue
        if topology.on_path(info.index):
            places[info.index] = LayerTopology("main", None, role.get(info.name))
        elif info.index in topology.joins:
            joined = topology.joins[info.index]
            places[info.index] = LayerTopology("branch", infos[joined].name if joined is not None else None,
                                               role.get(info.name))
    return places


def _environment(device: str) -> dict[str, object]:
    """What the run's numbers depend on besides the model and the options: thread count (CPU reductions
    split by it), versions and the device's name (recorded, so ``compare`` can say when they differ)."""
    import platform

    import torch

    return {"threads": torch.get_num_threads(), "torch_version": torch.__version__,
            "python_version": platform.python_version(), "cuda_version": torch.version.cuda,
            "device_name": _device_name(device)}


def _device_name(device: str) -> str | None:
    import platform

    import torch

    try:
        if device.startswith("cuda"):
            return torch.cuda.get_device_name(torch.device(device))
        if device == "cpu":
            return _cpu_name() or platform.machine() or None
        return None
    except Exception:  # noqa: BLE001 - a name is for the record; never a reason to fail the analysis
        return None


@functools.lru_cache(maxsize=1)
def _cpu_name() -> str | None:
    """The processor's model name (Linux: /proc/cpuinfo; elsewhere what ``platform`` knows), read once
    per process (0.3 ms a report otherwise)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith(("model name", "hardware")) and ":" in line:
                    return " ".join(line.split(":", 1)[1].split()) or None
    except OSError:
        pass
    return platform.processor() or None


def _sampling_note(options: AnalyzeOptions) -> list[str]:
    if not options.sample_stats:
        return []
    return [f"--sample-stats {options.sample_stats}: activation statistics (mean, std, dead units, saturation) come from "
            f"{options.sample_stats} seeded units per layer, not all; gradients and weights are measured in full"]


def _split_ignored(findings: list[Finding], options: AnalyzeOptions) -> tuple[list[Finding], list[Finding]]:
    """(kept, ignored): ignore rules drop findings from the verdict but the report keeps them."""
    kept: list[Finding] = []
    ignored: list[Finding] = []
    for f in findings:
        (ignored if any(rule.matches(f.layer, f.kind) for rule in options.ignore) else kept).append(f)
    return kept, ignored


def _unobserved(m: Measurements, by_name: dict[str, ParamMeasure], display: dict[str, str]) -> list[LayerInfo]:
    """Rows for parameters that no observed layer used, grouped by owning module (display names)."""
    used = {name for s in m.layers for name in s.info.params.values()}
    used |= {alias for name in list(used) if name in by_name for alias in [by_name[name].name, *by_name[name].aliases]}
    groups: dict[str, dict[str, str]] = {}
    for p in m.params:
        if p.name in used or p.numel <= 1:  # a scalar is a constant or a gate, not a layer
            continue
        owner, _, role = display.get(p.name, p.name).rpartition(".")
        groups.setdefault(owner or display.get(p.name, p.name), {})[role] = p.name
    start = len(m.layers)
    return [
        LayerInfo(start + i, owner, "unobserved", "parameters", params=params, observable=False,
                  note="not observed: no layer op of this module ran as its own call (a parent used its "
                       "weights directly, or it is unused); its parameter gradients are still reported")
        for i, (owner, params) in enumerate(groups.items())
    ]


def _layer(position: int, stats: LayerStats | None, infos: list[LayerInfo], params: dict[str, ParamMeasure],
           options: AnalyzeOptions, place: LayerTopology | None, batch: int | None, deep_tanh: bool,
           median_ratio: float | None) -> LayerReport:
    info = infos[position]
    forward = stats.forward if stats else None
    note = info.note
    activation = _activation(forward) if forward else None
    if activation and too_few_samples(activation, options.thresholds):
        note = f"dead ratio not judged: only {activation.samples_per_unit:.0f} observations per unit (use more samples)"
    weight = params.get(info.params.get("weight", ""))
    bias = params.get(info.params.get("bias", ""))
    weight_ratio = _weight_ratio(info, params)
    grad = GradStats(
        output_rms=stats.grad_rms if stats else None,
        nonfinite=bool(stats.grad_nonfinite) if stats else False,
        weight_norm=weight.grad_norm if weight else None,
        bias_norm=bias.grad_norm if bias else None,
        weight_rms=weight.grad_norm / math.sqrt(weight.numel) if weight and weight.grad_norm is not None else None,
        weight_ratio=weight_ratio,
        relative_ratio=weight_ratio / median_ratio if weight_ratio is not None and median_ratio is not None else None,
    )
    init = None
    if weight is not None and weight.quantised and info.kind in WEIGHT_KINDS:
        note = note or (f"init not judged: the weight is stored as {weight.quantised} (quantised), so its stored "
                        "values are not the weights the layer computes with")
    elif info.attrs.get("pruned") and info.kind in WEIGHT_KINDS:
        note = note or ("init not judged: the weight is pruned (torch.nn.utils.prune), so the layer computes with "
                        "weight_orig x weight_mask; the norms and gradients are weight_orig's")
    elif info.kind in WEIGHT_KINDS and weight is not None and weight.numel and info.observable:
        shape = weight.shape[-int(info.attrs["expert_slice"]):] if info.attrs.get("expert_slice") else weight.shape
        summary = WeightSummary(shape, weight.weight_norm / math.sqrt(weight.numel))  # an expert: its slice's fans
        spread = None
        if weight.unit_deviation is not None:
            spread = weight.unit_deviation / weight.weight_norm if weight.weight_norm else 0.0
        init = init_advice(infos, position, summary, deep_tanh, spread)
    shape = list(info.shape) if info.shape is not None else None
    per_sample = math.prod(shape) // batch if shape and batch and math.prod(shape) % batch == 0 else None
    time = None
    if stats is not None and stats.time:
        ratio = stats.time[0] / stats.time[-1] if stats.time[-1] else math.inf
        time = TimeProfile(len(stats.time), stats.time, ratio)
    return LayerReport(info.index, info.name, info.kind, info.type_name, info.observable and forward is not None,
                       shape, activation, grad, init, note, place, per_sample, time)


def _activation(f: ForwardSummary) -> ActivationStats:
    centring = abs(f.mean) / f.std if f.std > 0 else (0.0 if f.mean == 0 else math.inf)
    return ActivationStats(
        mean=f.mean, std=f.std, signal_std=f.signal_std, centring=centring, min=f.min, max=f.max, zero_fraction=f.zero_fraction,
        nonfinite_units=f.nonfinite_units, dead_ratio=f.dead_ratio, units=f.units, samples_per_unit=f.samples_per_unit,
        saturation=f.saturation,
    )


def _parameter(p: ParamMeasure, owner: dict[str, str], display: dict[str, str]) -> ParameterReport:
    layer = owner.get(p.name) or next((owner[a] for a in p.aliases if a in owner), None)
    return ParameterReport(
        name=display.get(p.name, p.name),
        layer=layer,
        shape=list(p.shape),
        numel=p.numel,
        grad_norm=p.grad_norm,
        grad_rms=p.grad_norm / math.sqrt(p.numel) if p.grad_norm is not None and p.numel else None,
        weight_norm=p.weight_norm,
        ratio=p.grad_norm / p.weight_norm if p.grad_norm is not None and p.weight_norm else None,
        requires_grad=p.requires_grad,
        aliases=[display.get(a, a) for a in p.aliases],
    )


def _summary(layers: list[LayerReport], findings: list[Finding], options: AnalyzeOptions, ignored: int) -> Summary:
    failing = [f for f in findings if fails(f, options.fail_on)]
    exit_code = EXIT_FINDINGS if failing else EXIT_OK
    status = "fail" if failing else ("warn" if any(f.severity != "info" for f in findings) else "ok")
    serious = {f.layer for f in findings if f.severity in ("error", "warning")}
    first_bad = next((l.name for l in layers if l.name in serious), None)
    nonfinite = next((f.layer for f in findings if f.kind == "nonfinite"), None)
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    verdict = _verdict(status, layers, findings, failing)
    if ignored:
        verdict += f" ({ignored} finding{'' if ignored == 1 else 's'} ignored by ignore rules)"
    return Summary(status, exit_code, first_bad, nonfinite, counts, verdict)


def _verdict(status: str, layers: list[LayerReport], findings: list[Finding], failing: list[Finding]) -> str:
    observed = sum(l.observed for l in layers)
    if not findings:
        return f"OK: no findings across {observed} observed layers"
    kinds = sorted({f.kind for f in findings}, key=[f.kind for f in findings].index)
    head = {"fail": "FAIL", "warn": "WARN", "ok": "OK"}[status]
    lead = failing[0] if failing else findings[0]
    return f"{head}: {', '.join(kinds)} -- {lead.message}"
