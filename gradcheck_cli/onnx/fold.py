"""Constant folding: evaluate, once at load time, the nodes whose inputs are all constants.

Why: exporters write weights as ``Constant`` nodes, or as small subgraphs of initializers and
constants (``Transpose``, ``Cast``, ``Reshape``, ``ConstantOfShape``...). Folded into initializers,
such a weight is one tensor that a gradient can be taken with respect to, like any other.
Evaluation uses this interpreter's own op implementations, so a folded value is exactly what
running the graph would have computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import onnx
import torch
from onnx import numpy_helper

from .dtypes import UnsupportedDtypeError, tensor_proto_to_torch, torch_to_numpy
from .errors import OnnxUnsupportedError
from .graph import node_inputs, topological_order
from .registry import NodeContext, lookup, parse_attributes

RANDOM_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli",
                        "Multinomial", "Dropout"})
"""Never folded: their value differs run to run (Dropout: its mask, in training mode)."""

VIEW_OPS = frozenset({"Identity", "Cast", "CastLike", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})
"""Ops that rearrange or retype a tensor without changing its values (or its gradient's norm)."""


@dataclass
class Folded:
    """What folding did to a graph."""

    nodes: int = 0
    """How many nodes were evaluated and removed."""
    sources: dict[str, list[str]] = field(default_factory=dict)
    """New initializer -> the initializers and ``Constant`` outputs it was computed from."""


def fold_constants(model: onnx.ModelProto, base_dir: Optional[str] = None,
                   keep: Callable[[onnx.NodeProto], bool] = lambda node: False) -> Folded:
    """Replace every main-graph node whose inputs are all constants by initializers holding its outputs.

    ``keep(node)`` leaves a node live even so (a caller that wants a layer to stay a layer).
    Graph inputs that have an initializer are overridable, so they are not constants. A node
    the interpreter cannot evaluate stays as it is; running the graph then reports it. The graph
    is rewritten in place.
    """
    graph = model.graph
    opsets = {("" if o.domain in ("", "ai.onnx") else o.domain): o.version for o in model.opset_import}
    overridable = {i.name for i in graph.input}
    protos = {t.name: t for t in graph.initializer if t.name not in overridable}
    values: dict[str, torch.Tensor] = {}
    sources: dict[str, list[str]] = {name: [name] for name in protos}
    folded: list[onnx.NodeProto] = []
    for node in topological_order(graph):
        if not _foldable(node, sources) or keep(node):
            continue
        args = [_value(x, values, protos, base_dir) if x else None for x in node.input]
        outputs = _evaluate(node, args, opsets, base_dir)
        if outputs is None:
            continue
        origin = sorted({s for x in node.input if x for s in sources[x]}) or [node.output[0]]
        for name, tensor in zip(node.output, outputs):
            if name and tensor is not None:
                values[name], sources[name] = tensor, origin
        folded.append(node)
    return _rewrite(graph, folded, values, sources)


def _foldable(node: onnx.NodeProto, constants: dict[str, list[str]]) -> bool:
    if node.op_type in RANDOM_OPS or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                         for a in node.attribute):
        return False
    return all(x in constants for x in node.input if x)


def _value(name: str, values: dict[str, torch.Tensor], protos: dict[str, onnx.TensorProto],
           base_dir: Optional[str]) -> torch.Tensor:
    if name not in values:
        values[name] = tensor_proto_to_torch(protos[name], base_dir)
    return values[name]


def _evaluate(node: onnx.NodeProto, args: list, opsets: dict[str, int],
              base_dir: Optional[str]) -> Optional[tuple[Optional[torch.Tensor], ...]]:
    """The node's outputs, or None when the interpreter cannot compute them here."""
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    version = opsets.get(domain)
    try:
        impl = lookup(domain, node.op_type, version, node.name)
        ctx = NodeContext(node, parse_attributes(node, base_dir), version or 0, len(node.output),
                          tuple(bool(o) for o in node.output))
        with torch.no_grad():
            result = impl.fn(ctx, args)
    except (OnnxUnsupportedError, UnsupportedDtypeError, RuntimeError, ValueError, TypeError, IndexError):
        return None
    outputs = (result,) if result is None or isinstance(result, torch.Tensor) else tuple(result)
    if not all(t is None or isinstance(t, torch.Tensor) for t in outputs):
        return None
    return outputs


def _rewrite(graph: onnx.GraphProto, folded: list[onnx.NodeProto], values: dict[str, torch.Tensor],
             sources: dict[str, list[str]]) -> Folded:
    """Drop the folded nodes; their outputs that live nodes or the graph still read become initializers."""
    if not folded:
        return Folded()
    gone = {id(node) for node in folded}
    live = [node for node in graph.node if id(node) not in gone]
    read = {x for node in live for x in node_inputs(node)} | {o.name for o in graph.output}
    produced = [name for node in folded for name in node.output if name in read and name in values]
    del graph.node[:]
    graph.node.extend(live)
    for name in produced:
        graph.initializer.append(numpy_helper.from_array(torch_to_numpy(values[name].contiguous()), name))
    inputs = {i.name for i in graph.input}
    consumed = {x for node in folded for x in node.input}
    kept = read | inputs
    for tensor in [t for t in graph.initializer if t.name in consumed and t.name not in kept]:
        graph.initializer.remove(tensor)
    return Folded(len(folded), {name: sources[name] for name in produced})


def view_source(producers: dict[str, onnx.NodeProto], name: str,
                is_leaf: Callable[[str], bool]) -> tuple[Optional[str], bool]:
    """The leaf tensor ``name`` is a view of (through :data:`VIEW_OPS`), and whether it reaches ``name``
    with its two last axes swapped (a weight read as ``Transpose(W)``); (None, False) when it is
    computed from anything else."""
    swapped = False
    while not is_leaf(name):
        node = producers.get(name)
        if node is None or node.op_type not in VIEW_OPS or not node.input:
            return None, False
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            rank = len(perm) if perm is not None else 2  # no perm: reverse the axes (a swap for a matrix)
            if perm is None or perm == [*range(rank - 2), rank - 1, rank - 2]:
                swapped = not swapped
            elif perm != list(range(rank)):
                return None, False
        name = node.input[0]
    return name, swapped
