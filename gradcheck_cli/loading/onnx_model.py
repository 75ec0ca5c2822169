"""ONNX models: load through the interpreter, make inputs from the graph's declared shapes, verify.

Kept apart from the interpreter (``gradcheck_cli.onnx``) so that package stays a plain
"ONNX graph -> torch module" library, and everything about gradcheck's options lives here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gradcheck_cli.errors import AnalysisError, InputError, ModelLoadError, first_line
from gradcheck_cli.loading.base import LoadedModel

DEFAULT_BATCH = 8
"""Symbolic first dimensions (the batch) become this, unless --batch-size says otherwise."""
DEFAULT_DIM = 16
"""Other symbolic dimensions (sequence length...) become this."""
_FLOAT_TYPES = frozenset({1, 10, 11, 16})
"""TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16 (kept as numbers: onnx is imported only when loading)."""
VERIFY_ATOL = 1e-4
VERIFY_RTOL = 1e-3


def load_onnx_model(path: Path, device: Any) -> LoadedModel:
    from gradcheck_cli.onnx import OnnxLoadError, OnnxModule, OnnxUnsupportedError, load_onnx

    try:
        proto = load_onnx(str(path))
        prepared = prepare_graph(proto, str(path.parent))
        module = OnnxModule(proto, base_dir=str(path.parent), trainable=prepared.trainable)
    except (OnnxLoadError, OnnxUnsupportedError) as exc:
        message = first_line(exc)
        if str(path) not in message:  # say which file (external-data errors name only the tensor)
            message = f"{path}: {message}"
        raise ModelLoadError(message, hint=_hint(exc)) from None
    module.to(device)
    notes = _exporter_notes(module) + prepared.notes()
    return LoadedModel(
        module, "onnx", str(path), frontend="onnx", notes=notes,
        make_inputs=lambda seed, batch_size, value_range: random_onnx_inputs(module, seed, batch_size, value_range),
        verify=lambda args, kwargs: _verified(str(path), module, args, kwargs),
        display_names=dict(module.onnx_name),
    )


@dataclass
class PreparedGraph:
    """What :func:`prepare_graph` changed, for the notes."""

    folded: list[str] = field(default_factory=list)
    """Weights computed at load time from constant nodes."""
    tied: dict[str, str] = field(default_factory=dict)
    """Pre-transposed copy -> the initializer it copies (now read through a Transpose)."""
    split: int = 0
    """Initializers shared by several layers of one op type, now one copy per layer."""
    trainable: set[str] = field(default_factory=set)
    """The float initializers that are weights (the others, masks and scalars, are constants)."""

    def notes(self) -> list[str]:
        notes = []
        if self.folded:
            notes.append(f"{len(self.folded)} weight(s) held in Constant nodes or computed from constants (such as a "
                         f"Transpose of an initializer) were evaluated at load time and count as parameters: "
                         f"{', '.join(self.folded[:3])}{', ...' if len(self.folded) > 3 else ''}")
        if self.tied:
            notes.append(f"{len(self.tied)} initializer(s) held a transposed copy of another "
                         f"({', '.join(sorted(set(self.tied.values())))}): read as its transpose, so the tied weight "
                         "gets the sum of its uses' gradients, as in PyTorch")
        if self.split:
            notes.append(
                f"{self.split} initializer(s) were shared by several layers of one op type (exporters merge identical "
                "tensors: LayerNorm's initial ones, zero biases, deep-copied layers); each layer got its own copy, so "
                "its gradient is its own, as in the PyTorch model (a model that truly ties them sums those gradients)")
        return notes


def prepare_graph(proto: Any, base_dir: str) -> PreparedGraph:
    """Rewrite an exported graph so that its initializers are the model's weights, one tensor per weight,
    under the model's names where the file tells them.

    Constant subgraphs are folded (weights in ``Constant`` nodes or behind a ``Transpose``), tied
    weights stored as transposed copies are tied again, merged per-layer initializers are split,
    folded copies take the name of the parameter they hold, and only the tensors used or recorded
    as weights are trainable (a causal mask is a constant).
    """
    from gradcheck_cli.onnx.fold import fold_constants
    from gradcheck_cli.onnx.weights import (
        mark_folded_embeddings,
        rename_initializers,
        retie_transposed_copies,
        trainable_initializers,
    )

    graph = proto.graph
    floats = {t.name for t in graph.initializer if t.data_type in _FLOAT_TYPES}
    folded = fold_constants(proto, base_dir, keep=_layer_keeper(graph, floats))
    tied = retie_transposed_copies(graph, base_dir)
    mark_folded_embeddings(graph)
    split = unshare_initializers(proto, among=trainable_initializers(graph))
    trainable = trainable_initializers(graph)
    names = rename_initializers(graph, _model_names(graph, {name: [s for s in sources if s in floats]
                                                            for name, sources in folded.sources.items()}))
    trainable = {names.get(name, name) for name in trainable}
    weights = sorted(names.get(name, name) for name in folded.sources if names.get(name, name) in trainable)
    return PreparedGraph(weights, tied, split, trainable)


def _layer_keeper(graph: Any, floats: set[str]) -> Any:
    """Folding leaves layer ops live (a Gather on constant positions is still the embedding), and the
    views of a weight that layers of different op types read: ``Transpose(wte)`` of a tied LM head
    next to the embedding's Gather is a real tie, kept so that both uses reach one tensor. A weight
    reached by layers of one op type only (the legacy exporter's ``Identity(0.bias)`` for every
    zero bias) is merged identical tensors: its views fold into copies, one per layer."""
    from gradcheck_cli.onnx.fold import VIEW_OPS
    from gradcheck_cli.onnx.weights import WEIGHT_OPERANDS

    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for x in node.input:
            readers.setdefault(x, []).append(node)

    def layer_types(name: str) -> set[str]:
        found = set()
        for node in readers.get(name, []):
            found |= layer_types(node.output[0]) if node.op_type in VIEW_OPS and node.output else {node.op_type}
        return found

    tied = {x for x in floats if len(layer_types(x) & set(WEIGHT_OPERANDS)) > 1}
    return lambda node: node.op_type in WEIGHT_OPERANDS or any(x in tied for x in node.input)


def _model_names(graph: Any, folded_from: dict[str, list[str]]) -> dict[str, str]:
    """Folded initializer -> the parameter it holds, when that is one tensor no longer in the graph:
    ``W_t`` (our fold of ``Transpose(W)``) -> ``W``; ``val_37`` (the exporter's pre-transposed copy)
    -> ``encoder.layer.0.attention.self.query.weight``. A name two tensors would share is not given."""
    from gradcheck_cli.onnx.weights import exporter_origins, parameter_origin

    present = {t.name for t in graph.initializer}
    origins = exporter_origins(graph)
    names = {name: sources[0] for name, sources in folded_from.items() if len(sources) == 1}
    names |= {name: parameter_origin(graph, name, origins) for name in origins}
    names = {name: model for name, model in names.items() if model and name in present and model not in present}
    shown = Counter(names.values())
    return {name: model for name, model in names.items() if shown[model] == 1}


def check_feed(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Inputs that cannot feed the graph (unknown names, too many, missing) are a bad input: say which
    inputs the graph has."""
    names = [spec[0] for spec in module.input_specs]
    unknown = [k for k in kwargs if k not in names and k not in module.optional_input_names]
    given = set(names[: len(args)]) | set(kwargs)
    missing = [n for n in names if n not in given]
    if unknown or missing or len(args) > len(names):
        declared = ", ".join(f"{n} {list(d)} {str(t).removeprefix('torch.')}" for n, d, t in module.input_specs)
        problem = (f"unknown input name(s) {', '.join(map(repr, unknown))}" if unknown else
                   f"{len(args)} positional inputs for {len(names)} graph inputs" if len(args) > len(names) else
                   f"missing graph input(s) {', '.join(map(repr, missing))}")
        raise InputError(f"the data does not fit the ONNX graph's inputs: {problem}; the graph takes {declared}",
                         hint="name the data's arrays after the graph inputs, or pass them positionally in that order")


def _verified(path: str, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    check_feed(module, args, kwargs)
    outcome = verify_with_onnxruntime(path, module, args, kwargs)
    return outcome if isinstance(outcome, str) else f"forward output verified against onnxruntime: max abs difference {outcome:.3g}"


SPLITTABLE = frozenset({
    "LayerNormalization", "BatchNormalization", "InstanceNormalization", "GroupNormalization", "RMSNormalization",
    "SimplifiedLayerNormalization", "Gemm", "Conv", "ConvTranspose", "MatMul", "Add", "Mul",
})
"""Op types whose float initializer operands are per-layer parameters (weights, biases, norm scales)."""


def unshare_initializers(model: Any, among: set[str] | None = None) -> int:
    """Give each consumer its own copy of a float initializer that several nodes of one op type share.

    Exporters deduplicate identical initializers, so twelve LayerNorms initialised to ones read one
    tensor and each row would show the sum of all twelve gradients. A tensor consumed by nodes of
    different op types (an embedding table reused as the LM head: Gather and MatMul) is a real tie and
    stays shared. Only the initializers ``among`` are split (default: all), so a constant such as a
    mask is not copied. Returns how many initializers were split; the graph is rewritten in place.
    """
    import onnx

    graph = model.graph
    inits = {t.name: t for t in graph.initializer if t.data_type in _FLOAT_TYPES and len(t.dims) >= 1
             and (among is None or t.name in among)}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in inits:
                consumers.setdefault(name, []).append((node, position))
    taken = {t.name for t in graph.initializer} | {v for node in graph.node for v in (*node.input, *node.output)}
    split = 0
    for name, uses in consumers.items():
        if len(uses) < 2 or len({node.op_type for node, _ in uses}) != 1 or uses[0][0].op_type not in SPLITTABLE:
            continue
        split += 1
        for copy_number, (node, position) in enumerate(uses[1:], start=2):
            fresh, k = f"{name}__{copy_number}", copy_number
            while fresh in taken:
                k += 1
                fresh = f"{name}__{k}"
            taken.add(fresh)
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[name])
            copy.name = fresh
            graph.initializer.append(copy)
            node.input[position] = fresh
    return split


def _hint(exc: Exception) -> str:
    from gradcheck_cli.onnx import OnnxExternalDataError, OnnxUnsupportedError

    if isinstance(exc, OnnxUnsupportedError):
        return "export with another opset, or analyse the PyTorch model itself"
    if isinstance(exc, OnnxExternalDataError):
        return "external data must be files inside the model's directory"
    return "re-export the model; is the file complete?"


def _exporter_notes(module: Any) -> list[str]:
    notes = []
    ops = {node.op_type for node in module.nodes}
    if "Conv" in ops and "BatchNormalization" not in ops:
        notes.append(
            "the graph has convolutions and no BatchNormalization: if the PyTorch model had BatchNorm, the "
            "exporter folded it into the convolutions, whose weights and gradients then include its scale"
        )
    scalars = sum(1 for p in module.parameters() if p.numel() <= 1)
    if scalars:
        notes.append(
            f"{scalars} one-element float initializers (exporter constants such as GELU's 0.5) are treated as "
            "parameters; they get no rows of their own"
        )
    return notes


def random_onnx_inputs(module: Any, seed: int, batch_size: int | None, value_range: tuple[int, int] | None) -> tuple[torch.Tensor, ...]:
    """Seeded inputs with the graph's declared shapes; symbolic dims filled (batch first)."""
    generator = torch.Generator().manual_seed(seed)
    vocab = _embedding_sizes(module)
    tensors = []
    for name, dims, dtype in module.input_specs:
        shape = [
            d if isinstance(d, int) and d > 0 else (batch_size or DEFAULT_BATCH if i == 0 else DEFAULT_DIM)
            for i, d in enumerate(dims)
        ]
        if dtype.is_floating_point:
            tensors.append(torch.randn(shape, generator=generator).to(dtype))
        elif dtype == torch.bool:
            tensors.append(torch.randint(0, 2, shape, generator=generator).bool())
        else:
            low, high = value_range or (0, vocab.get(name, 2))
            tensors.append(torch.randint(low, high, shape, generator=generator, dtype=dtype))
    return tuple(tensors)


def _embedding_sizes(module: Any) -> dict[str, int]:
    """Graph input -> rows of the embedding table it indexes (a Gather on an initializer)."""
    initializers = {onnx: attr for attr, onnx in module.onnx_name.items()}
    sizes = {}
    for node in module.nodes:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[0] in initializers:
            table = getattr(module, initializers[node.input[0]])
            sizes[node.input[1]] = int(table.shape[0])
    return sizes


_RANDOM_OPS = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"}


def stochastic_node(module: Any) -> str | None:
    """A node that samples random numbers (so two runtimes cannot agree), or None."""
    for node in module.nodes:
        if node.op_type in _RANDOM_OPS:
            return f"{node.op_type} node {node.name!r}"
        if node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]:
            try:
                training = module.initializer(node.input[2])
            except (AttributeError, KeyError):
                return f"Dropout node {node.name!r} (training_mode computed at run time)"
            if bool(training.reshape(-1)[0]):
                return f"Dropout node {node.name!r} in training mode"
    return None


def verify_with_onnxruntime(path: str, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float | str:
    """Max |interpreter - onnxruntime| over the first output; an error above tolerance.

    A graph that samples random numbers cannot be compared run against run: then the reason
    is returned instead of a difference (export in eval mode to verify).
    """
    random = stochastic_node(module)
    if random is not None:
        return f"not verifiable: the graph samples random numbers ({random}); export in eval mode to verify"
    try:
        import onnxruntime
    except ImportError:
        raise InputError("--verify needs onnxruntime", hint="pip install onnxruntime") from None
    names = [spec[0] for spec in module.input_specs]
    feeds = {name: t.detach().cpu().numpy() for name, t in zip(names, args)}
    feeds |= {k: v.detach().cpu().numpy() for k, v in kwargs.items()}
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    expected = torch.from_numpy(session.run(None, feeds)[0])
    with torch.no_grad():
        ours = module(*args, **kwargs)
    ours = (ours[0] if isinstance(ours, tuple) else ours).detach().cpu().to(expected.dtype)
    if ours.shape != expected.shape:
        raise AnalysisError(f"--verify: output shape {tuple(ours.shape)} differs from onnxruntime's {tuple(expected.shape)}")
    difference = float((ours - expected).abs().max()) if ours.numel() else 0.0
    tolerance = VERIFY_ATOL + VERIFY_RTOL * float(expected.abs().max()) if expected.numel() else VERIFY_ATOL
    if not difference <= tolerance:
        raise AnalysisError(
            f"--verify: the interpreter's output differs from onnxruntime's by {difference:.3g} (tolerance {tolerance:.3g})",
            hint="please report this model; the analysis would not describe it faithfully",
        )
    return difference
