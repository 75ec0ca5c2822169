"""Which initializers of an ONNX graph are the model's weights, and undoing how exporters disguise them.

An ONNX file has no notion of "parameter": every constant is an initializer, the causal mask and
GELU's 0.5 as much as a Linear's weight. A gradient report must take gradients with respect to the
weights only, so they are told apart by how a tensor is used (the weight operand of a Gemm, Conv,
norm or embedding lookup), by what the torch exporter recorded about it (graph-signature kind,
what a folded value was computed from), and by parameter-style names.
"""

from __future__ import annotations

import ast
import re
from typing import Optional

import onnx
import torch

from .dtypes import tensor_proto_to_torch
from .fold import view_source

WEIGHT_OPERANDS: dict[str, tuple[int, ...]] = {
    "Gemm": (0, 1, 2), "MatMul": (0, 1), "Conv": (1, 2), "ConvTranspose": (1, 2), "Gather": (0,),
    "LayerNormalization": (1, 2), "BatchNormalization": (1, 2), "InstanceNormalization": (1, 2),
    "GroupNormalization": (1, 2), "RMSNormalization": (1,), "SimplifiedLayerNormalization": (1,), "PRelu": (1,),
    "LSTM": (1, 2, 3), "GRU": (1, 2, 3), "RNN": (1, 2, 3),
}
"""Op type -> positions of the inputs that are weights when constant (matrices, kernels, their biases,
norm scales and shifts, embedding tables); BatchNorm's running statistics are not."""

_BIASED = frozenset({"MatMul"})
_KIND_KEY = "pkg.torch.export.graph_signature.InputSpec.kind"
_ORIGIN_KEY = "pkg.onnxscript.optimizer.folded_from"
_FLOAT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
                          onnx.TensorProto.DOUBLE})
_PARAMETER_NAME = re.compile(r"(^|[._])(weight|bias)(_\w+)?(__\d+)?$")


def parameter_like(name: str) -> bool:
    """Named as torch names parameters (``fc.weight``, ``in_proj_bias``, ``weight_ih_l0``)."""
    return bool(_PARAMETER_NAME.search(name))


def _metadata(graph: onnx.GraphProto, key: str) -> dict[str, str]:
    return {v.name: p.value for v in graph.value_info for p in v.metadata_props if p.key == key}


def exporter_kinds(graph: onnx.GraphProto) -> dict[str, str]:
    """Initializer -> the torch.export signature kind the exporter recorded (PARAMETER, BUFFER...)."""
    return _metadata(graph, _KIND_KEY)


def exporter_origins(graph: onnx.GraphProto) -> dict[str, list[str]]:
    """Initializer -> the values the exporter's optimizer folded it from (onnxscript metadata)."""
    origins = {}
    for name, text in _metadata(graph, _ORIGIN_KEY).items():
        try:
            origins[name] = [str(s) for s in ast.literal_eval(text)]
        except (ValueError, SyntaxError):
            continue
    return origins


def parameter_origin(graph: onnx.GraphProto, name: str, origins: dict[str, list[str]]) -> Optional[str]:
    """The one parameter an exporter-folded initializer was computed from (``val_502`` is
    ``Transpose(lm_head.weight)``; ``embedding_1`` is ``wpe.weight`` gathered at fixed positions)."""
    found = [s for s in origins.get(name, []) if parameter_like(s)]
    return found[0] if len(found) == 1 else None


def _float_initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    overridable = {i.name for i in graph.input}
    return {t.name: t for t in graph.initializer if t.data_type in _FLOAT_TYPES and t.name not in overridable}


def weight_operands(graph: onnx.GraphProto, leaves: dict[str, int]) -> set[str]:
    """The ``leaves`` (name -> rank) used as weights: at a :data:`WEIGHT_OPERANDS` position (directly or
    through views such as ``Transpose``), or a vector added to a weighted MatMul's output (its bias)."""
    producers = {o: node for node in graph.node for o in node.output if o}
    found: set[str] = set()
    weighted: set[str] = set()
    for node in graph.node:
        for position in WEIGHT_OPERANDS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position]:
                leaf, _ = view_source(producers, node.input[position], leaves.__contains__)
                if leaf is not None:
                    found.add(leaf)
                    weighted.update(node.output[:1] if node.op_type in _BIASED else ())
    for node in graph.node:
        if node.op_type == "Add" and any(x in weighted for x in node.input):
            found.update(x for x in node.input if leaves.get(x) == 1)
    return found


def trainable_initializers(graph: onnx.GraphProto) -> set[str]:
    """The float initializers that are the model's weights.

    What the exporter recorded wins (a torch.export PARAMETER is one, a BUFFER or constant is not).
    Otherwise a tensor is a weight when it is used as one (:func:`weight_operands`), was folded
    from a parameter, or has a parameter's name; the rest (masks, scalar constants) are constants.
    """
    floats = _float_initializers(graph)
    kinds, origins = exporter_kinds(graph), exporter_origins(graph)
    operands = weight_operands(graph, {name: len(t.dims) for name, t in floats.items()})
    trainable = set()
    for name in floats:
        if name in kinds:
            if kinds[name] == "PARAMETER":
                trainable.add(name)
        elif name in operands or parameter_like(name) or parameter_origin(graph, name, origins):
            trainable.add(name)
    return trainable


def retie_transposed_copies(graph: onnx.GraphProto, base_dir: Optional[str] = None) -> dict[str, str]:
    """Replace each initializer that holds the transpose of another one by ``Transpose`` of it.

    Exporters store a tied LM head (GPT-2's ``lm_head.weight``, also the token embedding) as a
    pre-transposed copy, so the tie is lost and each use would get half the gradient. Read through
    a live ``Transpose``, both uses reach one tensor again and its gradient is their sum, as in the
    PyTorch model. Only a tie across op types counts (an embedding's Gather and a head's MatMul):
    two layers of one type holding transposed values (zeros) are a coincidence, not a tie; so is a
    symmetric matrix. Returns copy -> original; the graph is rewritten in place.
    """
    floats = {name: t for name, t in _float_initializers(graph).items() if len(t.dims) == 2}
    kinds = exporter_kinds(graph)
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        for x in node.input:
            readers.setdefault(x, set()).add(node.op_type)
    copies = {name for name in floats if kinds.get(name) != "PARAMETER" and not parameter_like(name)}
    shapes = {tuple(floats[name].dims[::-1]) for name in copies}
    candidates = sorted((name for name, t in floats.items()
                         if tuple(t.dims) in shapes and kinds.get(name, "PARAMETER") == "PARAMETER"),
                        key=lambda name: name in copies)  # parameter names first
    if not candidates:
        return {}
    values = {name: tensor_proto_to_torch(floats[name], base_dir) for name in {*candidates, *copies}}
    by_print: dict[tuple, list[str]] = {}
    for name in candidates:
        by_print.setdefault(_fingerprint(values[name].T), []).append(name)
    tied: dict[str, str] = {}
    for name in sorted(copies, key=lambda name: (not readers.get(name, set()) & {"MatMul", "Gemm"}, name)):
        copy = values[name]  # a head's operand is the copy (the embedding keeps torch's layout)
        if name in tied.values() or (copy.shape[0] == copy.shape[1] and torch.equal(copy, copy.T)):
            continue
        match = next((o for o in by_print.get(_fingerprint(copy), []) if o != name and o not in tied
                      and readers.get(o, set()) != readers.get(name, set()) and torch.equal(values[o].T, copy)), None)
        if match is not None:
            tied[name] = match
    for copy, original in tied.items():
        graph.initializer.remove(floats[copy])
        graph.node.insert(0, onnx.helper.make_node("Transpose", [original], [copy], name=f"retie_{copy}", perm=[1, 0]))
    return tied


def _fingerprint(t: torch.Tensor) -> tuple:
    """Cheap key that equal tensors share: shape, dtype and the first row's first values."""
    return (tuple(t.shape), t.dtype, tuple(t[0, :8].tolist()) if t.numel() else ())


FOLDED_EMBEDDING = "gradcheck.folded_embedding"
"""Metadata key on the Identity node that :func:`mark_folded_embeddings` adds: the embedding module's path."""


def mark_folded_embeddings(graph: onnx.GraphProto) -> int:
    """Read each exporter-folded embedding lookup through an ``Identity`` that names its module.

    Dynamo folds a lookup at fixed indices (GPT-2's position embedding, ``wpe.weight`` at positions
    0..n-1) into an initializer named after the lookup (``embedding_1``), so no node is the
    embedding any more. The Identity is that node: its output is the lookup's, and its metadata says
    which module it was (the parameter it was folded from, less ``.weight``). Returns how many.
    """
    origins, present = exporter_origins(graph), {t.name for t in graph.initializer}
    marked = 0
    for name in origins:
        origin = parameter_origin(graph, name, origins)
        if name not in present or not name.startswith("embedding") or not (origin or "").endswith(".weight"):
            continue
        lookup = f"{name}__lookup"
        for node in graph.node:
            for position, x in enumerate(node.input):
                if x == name:
                    node.input[position] = lookup
        identity = onnx.helper.make_node("Identity", [name], [lookup], name=f"{name}__embedding")
        identity.metadata_props.add(key=FOLDED_EMBEDDING, value=str(origin).removesuffix(".weight"))
        graph.node.insert(0, identity)
        marked += 1
    return marked


def rename_initializers(graph: onnx.GraphProto, names: dict[str, str]) -> dict[str, str]:
    """Rename initializers (and every read of them); a new name already used by a value is skipped.
    Returns the renames made."""
    taken = {t.name for t in graph.initializer} | {x for node in graph.node for x in (*node.input, *node.output)}
    names = {old: new for old, new in names.items() if new not in taken}
    for t in graph.initializer:
        t.name = names.get(t.name, t.name)
    for node in graph.node:
        for position, x in enumerate(node.input):
            node.input[position] = names.get(x, x)
    for output in graph.output:
        output.name = names.get(output.name, output.name)
    return names
