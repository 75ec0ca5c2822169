"""The analysis run: model + data -> instrumented forward/backward passes -> a Report.

This module never prints. Progress goes through an optional observer so the CLI can show a
progress bar while library callers get silence.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch.nn.parameter import UninitializedTensorMixin

from gradcheck_cli.diagnose.build import build_report
from gradcheck_cli.errors import AnalysisError, GradcheckError, UsageError
from gradcheck_cli.analysis.sample import Sample, resolve_sample
from gradcheck_cli.measure.instrument import instrument
from gradcheck_cli.loading import LoadedModel, load_model, wrap_object
from gradcheck_cli.analysis.loss import resolve_loss
from gradcheck_cli.analysis.passes import forward_backward, materialise
from gradcheck_cli.analysis.state import gc_paused as _gc_paused, grad_on as _grad_on, on_device as _on_device
from gradcheck_cli.analysis.state import preserved as _preserved, rng_kept as _rng_kept, seed_passes as _seed

if TYPE_CHECKING:  # pragma: no cover
    from gradcheck_cli.analysis.distributed import Distributed
from gradcheck_cli.analysis.options import AnalyzeOptions, DataSpec
from gradcheck_cli.report.model import Report
from gradcheck_cli.measure.measurements import Measurements
from gradcheck_cli.measure.hot import HotSquares
from gradcheck_cli.measure.params import canonical_dims, parameter_measures, unit_dims
from gradcheck_cli.measure.collector import StatsCollector
from gradcheck_cli.measure.topology import analyse as analyse_topology
from gradcheck_cli.measure.tree import ModuleTree, module_tree


class Progress(Protocol):
    """What the engine reports while it works (the CLI renders it on stderr)."""

    def stage(self, text: str) -> None: ...
    def batch(self, done: int, total: int) -> None: ...


class _Silent:
    def stage(self, text: str) -> None:
        pass

    def batch(self, done: int, total: int) -> None:
        pass


def analyze(
    model: Any,
    inputs: Any = None,
    *,
    target: Any = None,
    input_shapes: list[tuple[int, ...]] | None = None,
    dtype: str = "float32",
    input_range: tuple[int, int] | None = None,
    factory: str | None = None,
    trust_pickle: bool = False,
    trust_remote_code: bool = False,
    factory_args: dict[str, Any] | None = None,
    data: DataSpec | None = None,
    options: AnalyzeOptions | None = None,
    progress: Progress | None = None,
    **option_values: Any,
) -> Report:
    """Analyse ``model`` (an nn.Module, ScriptModule, ExportedProgram or a model file path).

    ``inputs`` is a tensor, a tuple of tensors (positional), a dict (keyword), or a file path;
    without it, ``input_shapes`` gives seeded random data. ``data`` gives all of these at once as a
    :class:`DataSpec` (what the CLI resolves). Remaining keywords are :class:`AnalyzeOptions` fields
    (``loss="mse"``, ``batches=4``, ``fail_on=...``).
    """
    if data is None:
        data = DataSpec(inputs, target, tuple(input_shapes or ()), dtype, input_range)
    elif inputs is not None or target is not None or input_shapes:
        raise UsageError("pass either data=DataSpec(...) or inputs/target/input_shapes, not both")
    if options is None:
        if isinstance(option_values.get("fail_on"), str):
            from gradcheck_cli.analysis.options import parse_fail_on

            option_values["fail_on"] = parse_fail_on(option_values["fail_on"])
        options = AnalyzeOptions(**option_values)
    elif option_values:
        raise UsageError("pass either options=AnalyzeOptions(...) or option keywords, not both")
    progress = progress or _Silent()
    device = resolve_device(options.device)
    group = None
    if options.distributed != "none":  # imported only then: torch.distributed's set-up is not free
        from gradcheck_cli.analysis.distributed import start

        group = start(options.distributed, device, options.shard_by)
    if group is not None:
        device = group.device
    try:
        with _grad_on():
            progress.stage("loading model")
            if options.meta_init:
                loaded = _meta_model(model, group, factory_args, factory)
            elif isinstance(model, (str, Path)):
                loaded = load_model(str(model), factory=factory, trust_pickle=trust_pickle, device=device,
                                    trust_remote_code=trust_remote_code, factory_args=factory_args)
            else:
                loaded = wrap_object(model)
            with _on_device(loaded.module, device), _rng_kept(device), _gc_paused():
                return _analyze_loaded(loaded, device, options, progress, data, group)
    except GradcheckError as exc:
        if group is None:
            raise
        raise group.resolve(exc) from None
    except RuntimeError as exc:  # a collective failed: a peer left (its error is in the store) or timed out
        if group is None:
            raise
        raise group.peer_error(exc) from None


def _analyze_loaded(loaded: LoadedModel, device: torch.device, options: AnalyzeOptions, progress: Progress,
                    data: DataSpec, group: Distributed | None = None) -> Report:
    """Data, passes and report for a model already on ``device``."""
    sample = resolve_sample(data, loaded, options.seed, options.batch_size)
    batches = [b.to(device) for b in sample.batches(options.batch_size, options.batches)]
    if group is not None:
        if loaded.frontend != "modules":
            raise UsageError(f"--distributed needs an nn.Module model; this {loaded.format} model runs through the "
                             f"{loaded.frontend} front end", hint="give a factory (model.py:build), a state_dict with "
                             "--factory, or a Hugging Face folder")
        if options.training is not None:
            raise UsageError("--steps is not supported with --distributed yet", hint="train in one process")
        batches = group.shard_batches(batches)
    loss_name = resolve_loss(options.loss, sample.target)
    notes = list(loaded.notes) + sample.notes + _batches_note(len(batches), options.batches, options.batch_size,
                                                             sample.size())
    if options.verify and loaded.verify is not None:
        progress.stage("verifying the front end against a reference runtime")
        notes.append(loaded.verify(batches[0].args, batches[0].kwargs))
    measurements = run(loaded, batches, loss_name, options, progress, group)
    notes += measurements.notes
    if group is not None:
        group.global_shapes(measurements.layers, batches[0].size(), batches[0].part[1] if batches[0].part else None)
        notes.append(f"{group.strategy.upper()} across {group.world} processes: each rank ran its share of every "
                     "batch; statistics are merged over the global batch"
                     + ("; BatchNorm in train mode normalises each rank's share" if _has_batchnorm(loaded.module) and
                        options.mode == "train" else ""))
    training = _train(loaded, batches, loss_name, options, progress, random_inputs=data.inputs is None, notes=notes)
    progress.stage("diagnosing")
    return build_report(loaded, measurements, options, notes=notes, device=str(device), loss=loss_name,
                        samples=sample.size(), batch_size=options.batch_size, batches=len(batches), training=training)


def _batches_note(ran: int, requested: int, batch_size: int | None, samples: int | None) -> list[str]:
    """Fewer passes than ``batches`` asked for (the sample ran out): say how many ran and why, never silently."""
    if ran >= requested:
        return []
    if batch_size is None:
        why = "without a batch size the whole sample is one batch"
    elif samples is None:
        why = "the sample's size is unknown, so it is one batch"
    else:
        why = (f"{samples} samples make {ran} batch(es) of up to {batch_size}; for {requested} give at least "
               f"{requested * batch_size} samples or a smaller batch size")
    return [f"{ran} of the {requested} requested batches ran: {why}"]


def _train(loaded: LoadedModel, batches: list[Sample], loss_name: str, options: AnalyzeOptions, progress: Progress,
           *, random_inputs: bool, notes: list[str]) -> Any:
    """``--steps N``: train a copy (the model's state is restored afterwards), optionally scan for a stable lr."""
    if options.training is None:
        return None
    from gradcheck_cli.diagnose.over_training import stable
    from gradcheck_cli.training.loop import scan_learning_rates, train

    train_loss = loss_name
    if loss_name == "projection" and options.loss == "auto":
        train_loss = "random-target"
        notes.append("training without targets: the loss is the MSE to fixed seeded random targets (a projection loss "
                     "is unbounded below, so minimising it would diverge by design), or the model's own loss where "
                     "it returns a scalar")
    t = options.training
    progress.stage(f"training {t.steps} steps ({t.optimizer}, lr {t.rate:g}), measuring every {t.interval}")
    with _preserved(loaded.module, options.mode, settable=loaded.mode_settable):
        result = train(loaded, batches, train_loss, options, t, random_inputs, progress)
        if t.lr_scan and not stable(result, options.thresholds):
            progress.stage("scanning learning rates (--lr-scan)")
            result.scan = scan_learning_rates(loaded, batches, train_loss, options, t,
                                              lambda r: stable(r, options.thresholds))
    return result


def _meta_model(model: Any, group: Distributed | None, factory_args: dict[str, Any] | None,
                factory: str | None) -> LoadedModel:
    """``--meta-init``: a factory's model built on the meta device, to be materialised shard by shard --
    by re-running its init, or (a weights file with ``--factory``) by reading each rank's rows of the file."""
    from gradcheck_cli.analysis.distributed import build_on_meta
    from gradcheck_cli.loading.factory import is_factory_spec

    if group is None or group.strategy != "fsdp":
        raise UsageError("--meta-init needs --distributed fsdp", hint="only sharded parameters can skip the full model")
    if isinstance(model, (str, Path)) and not is_factory_spec(str(model)) and factory:
        return _meta_weights(Path(model), factory, group, factory_args)
    if not isinstance(model, str) or not is_factory_spec(model):
        raise UsageError("--meta-init needs a factory (model.py:build), or a state_dict/safetensors file with --factory",
                         hint="other model files hold a whole model: load them without --meta-init")
    module, group.meta_rng = build_on_meta(model, factory_args)
    return LoadedModel(module, "factory", model, notes=[
        "--meta-init: built on the meta device; each rank materialised only its shards and re-ran every module's "
        "reset_parameters in module order"])


def _meta_weights(path: Path, factory: str, group: Distributed, factory_args: dict[str, Any] | None) -> LoadedModel:
    from gradcheck_cli.analysis.distributed import build_on_meta
    from gradcheck_cli.loading.detect import detect_format
    from gradcheck_cli.loading.torch_files import fitted_state, lazy_weights

    fmt = detect_format(path)
    if fmt not in ("torch_save", "safetensors"):
        raise UsageError(f"--meta-init reads weights per shard from a state_dict or .safetensors file, not a {fmt} file")
    module, _ = build_on_meta(factory, factory_args)
    group.meta_weights, prefix = fitted_state(module.state_dict(), lazy_weights(path, fmt), path)
    notes = [f"--meta-init: built on the meta device; each rank read only its shards of {path.name}"]
    if prefix:
        notes.append(f"the weights' keys carried the prefix {prefix!r}; it was stripped")
    return LoadedModel(module, "safetensors" if fmt == "safetensors" else "state_dict", str(path), notes=notes)


def _has_batchnorm(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}", hint="use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was requested but CUDA is not available here", hint="use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"{name} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def run(loaded: LoadedModel, batches: list[Sample], loss_name: str, options: AnalyzeOptions, progress: Progress,
        group: Distributed | None = None) -> Measurements:
    """Instrumented forward + loss + backward for every batch; the model is restored afterwards."""
    module = loaded.module
    collector = StatsCollector(options.sample_stats, options.seed)
    if group is not None:
        from gradcheck_cli.measure.distributed import Reducer

        collector.reducer = Reducer()
    if next(iter(module.parameters()), None) is None:
        raise AnalysisError("the model has no parameters, so there are no gradients to diagnose",
                            hint="analyse a model with trainable layers")
    wrapped = group.wrap(module) if group is not None else None  # FSDP2 replaces the parameters: first
    tree = module_tree(module)  # one walk for everything below that reads the module tree
    notes = _materialised(loaded, tree, batches, options.seed) + _scripted(loaded, tree)
    with _preserved(module, options.mode, settable=loaded.mode_settable, tree=tree) as params:
        _seed(next(iter(params.values())).device, options.seed)  # the parameters are on the run's device
        # norms (and unit spreads) taken in the last batch's passes
        hot = (HotSquares(params, lambda: canonical_dims(unit_dims(collector.layers), params, tree.aliases))
               if group is None else None)
        collector.hot = hot
        try:
            with instrument(loaded, collector, functional=options.functional, tree=tree) as forward:
                forward = wrapped if wrapped is not None else forward
                for i, batch in enumerate(batches):
                    progress.batch(i, len(batches))
                    if hot is not None:
                        hot.armed = i == len(batches) - 1
                    with group.accumulating(wrapped, last=i == len(batches) - 1) if group is not None else nullcontext():
                        forward_backward(module, forward, batch, loss_name, options.seed + i, collector)
                progress.batch(len(batches), len(batches))
        finally:
            collector.hot = None  # its units callback refers to the collector: no cycle left to hold the gradients
            if hot is not None:
                hot.remove()
        layer_stats = collector.finalize()
        measured = parameter_measures(module, params, len(batches), unit_dims(collector.layers),
                                      sharded=group is not None and group.strategy == "fsdp", hot=hot,
                                      aliases=tree.aliases)
    topology = analyse_topology(collector.root, collector.nodes)
    collector.root, collector.nodes = None, {}  # the graph's skeleton is not kept
    return Measurements(layer_stats, measured, topology, notes)


def _materialised(loaded: LoadedModel, tree: ModuleTree, batches: list[Sample], seed: int) -> list[str]:
    """Lazy modules not yet called (``nn.LazyLinear``) get their shapes from one dry run of the first batch
    (:func:`~gradcheck_cli.analysis.passes.materialise`, in place: the tree's parameter objects stay the
    same), seeded like the passes; the note for the report, if any."""
    # the mixin, not UninitializedParameter: an isinstance against a Parameter class runs its metaclass's
    # Python __instancecheck__ (~1.5 us a parameter)
    lazy = [p for p in tree.params.values() if isinstance(p, UninitializedTensorMixin)]
    if not lazy or loaded.frontend != "modules" or not batches:
        return []
    _seed(lazy[0].device, seed)
    materialise(loaded.module, batches[0])
    return ["the model had lazy (uninitialised) parameters: they were materialised by one forward pass of the first "
            "batch without gradients, in eval mode, as the model's first call would"]


def _scripted(loaded: LoadedModel, tree: ModuleTree) -> list[str]:
    """The note on ``torch.jit.script`` submodules of an eager model: their layers run without hooks."""
    if not tree.scripted or loaded.frontend != "modules":
        return []
    more = " ..." if len(tree.scripted) > 3 else ""
    return [f"{', '.join(tree.scripted[:3])}{more}: torch.jit.script submodule(s), run as TorchScript, which calls "
            "no module hooks: the layers inside are not observed (their parameters' norms are reported); analyse "
            "the eager modules, or script the whole model (its graph is then instrumented)"]

