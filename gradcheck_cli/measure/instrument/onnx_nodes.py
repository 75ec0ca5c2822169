"""ONNX front end: the interpreter's per-node callback feeds the collector.

Layer names follow the module tree the exporter recorded: the dynamo exporter's
``pkg.torch.onnx.name_scopes``/``class_hierarchy`` metadata (``0.fc``, ``0.sigmoid``, exactly as
for the PyTorch model), or the legacy exporter's node names (``/layers.0/fc/Gemm`` -> ``layers.0.fc``).
"""

from __future__ import annotations

import ast
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gradcheck_cli.errors import ModelLoadError, first_line
from gradcheck_cli.measure.instrument.graph_naming import LazyRows, NodeSpec, decomposed_norms, param_roles
from gradcheck_cli.layers import NORM_KINDS, ONNX_KINDS, WEIGHT_KINDS
from gradcheck_cli.measure.collector import StatsCollector
from gradcheck_cli.measure.through_time import ONNX_RECURRENT, onnx_time_profile


def _meta(node: Any) -> dict[str, str]:
    return {p.key: p.value for p in node.metadata_props}


def _scope(node: Any) -> tuple[str, str | None]:
    """(module path, module class name or None when unknown)."""
    meta = _meta(node)
    try:
        scopes = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])
        classes = ast.literal_eval(meta["pkg.torch.onnx.class_hierarchy"])
        return str(scopes[-2]) if len(scopes) > 1 else "", str(classes[-2]).rsplit(".", 1)[-1] if len(classes) > 1 else ""
    except (KeyError, ValueError, SyntaxError, IndexError):
        pass
    parts = [p for p in node.name.split("/") if p]
    return ".".join(parts[:-1]), None


def _attr(node: Any, name: str, default: float) -> float:
    for a in node.attribute:
        if a.name == name:
            return float(a.f) if a.type == a.FLOAT else float(a.i)
    return default


def _reads(module: Any, params: dict[str, str]) -> list[tuple[list[str], bool]]:
    """Per node: the parameters it reads (directly, or through views: a tied LM head reads
    ``Transpose(wte)``), and whether one of them arrives with its two last axes swapped."""
    from gradcheck_cli.onnx.fold import view_source

    producers = {o: node for node in module.nodes for o in node.output if o}
    reads = []
    for node in module.nodes:
        names, swapped = [], False
        for x in node.input:
            leaf, flip = view_source(producers, x, params.__contains__) if x else (None, False)
            if leaf is not None and params[leaf] not in names:
                names.append(params[leaf])
                swapped |= flip
        reads.append((names, swapped))
    return reads


def _bias_adds(module: Any, reads: list[tuple[list[str], bool]]) -> dict[int, int]:
    """MatMul (weight initializer) -> the Add of a bias initializer that completes it as a Linear.

    Exporters write ``x @ W + b`` for Linear layers on >2-d inputs; the layer's output is the Add's.
    """
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(module.nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    fused = {}
    for i, node in enumerate(module.nodes):
        if node.op_type != "MatMul" or not reads[i][0]:
            continue
        users = consumers.get(node.output[0], [])
        if len(users) == 1 and module.nodes[users[0]].op_type == "Add" and reads[users[0]][0]:
            fused[i] = users[0]
    return fused


def _weight_path(kind: str, weights: list[str], names: dict[str, str]) -> str | None:
    """A layer's module path from its weight's name (``encoder.fc.weight`` -> ``encoder.fc``), for graphs
    without the exporter's module scopes: the name torch gave the parameter is the eager name."""
    if kind not in WEIGHT_KINDS | NORM_KINDS | {"embedding"} or not weights:
        return None
    name = names[weights[0]]
    return name.removesuffix(".weight") if name.endswith(".weight") and name != ".weight" else None


def _layer_attrs(node: Any, kind: str, swapped: bool) -> dict[str, float]:
    attrs: dict[str, float] = {}
    if kind == "leaky_relu":
        attrs["negative_slope"] = _attr(node, "alpha", 0.01)
    if (node.op_type == "MatMul" or (node.op_type == "Gemm" and not _attr(node, "transB", 0))) != swapped:
        attrs["transposed_weight"] = 1.0  # weight stored (in, out)
    if node.op_type in ("Conv", "ConvTranspose") and _attr(node, "group", 1) > 1:
        attrs["groups"] = _attr(node, "group", 1)
    return attrs


def _folded_embedding(node: Any, weights: list[str]) -> NodeSpec | None:
    """The row of an embedding lookup the exporter folded into a constant (see ``mark_folded_embeddings``)."""
    from gradcheck_cli.onnx.weights import FOLDED_EMBEDDING

    path = _meta(node).get(FOLDED_EMBEDDING)
    if path is None or not weights:
        return None
    return NodeSpec("embedding", "embedding", path, "Embedding", {"weight": weights[0]}, own=True, op_label="onnx.Gather")


_PLANS: weakref.WeakKeyDictionary[Any, tuple[list[Any], list[NodeSpec | None]]] = weakref.WeakKeyDictionary()


def plan_onnx(module: Any) -> list[NodeSpec | None]:
    """One spec per interpreter node (None: not a layer), made once per loaded model: the interpreter's
    graph does not change after loading, and planning reads every node's metadata (its scopes are Python
    literals to parse), 0.56 ms for the 30-layer MLP's 61 nodes on every call and every logged step."""
    cached = _PLANS.get(module)
    if cached is not None and cached[0] is module.nodes:
        return cached[1]
    specs = _plan(module)
    _PLANS[module] = (module.nodes, specs)
    return specs


def _plan(module: Any) -> list[NodeSpec | None]:
    params = {onnx: attr for attr, onnx in module.onnx_name.items()}
    reads = _reads(module, params)
    fused = _bias_adds(module, reads)
    moved = {add: matmul for matmul, add in fused.items()}
    candidates: list[tuple[Any, str, list[str], bool]] = []
    for i, node in enumerate(module.nodes):
        kind = ONNX_KINDS.get(node.op_type)
        weights, swapped = reads[i]
        if i in fused:  # observed at its bias Add instead
            candidates.append((node, "", [], False))
        elif i in moved:  # the Add that finishes a MatMul layer: named and weighted as the MatMul
            candidates.append((module.nodes[moved[i]], "linear", reads[moved[i]][0] + weights, reads[moved[i]][1]))
        elif kind is None or (node.op_type in ("MatMul", "Gather") and not weights):
            candidates.append((node, "", [], False))
        else:
            candidates.append((node, kind, weights, swapped))
    paths = Counter(_scope(n)[0] for n, kind, _, _ in candidates if kind)
    unobserved = [i for i, (_, kind, _, _) in enumerate(candidates) if not kind]
    norms = decomposed_norms([(*_scope(candidates[i][0]), reads[i][0]) for i in unobserved], set(paths))
    specs: list[NodeSpec | None] = []
    decomposed = {unobserved[position]: norm for position, norm in norms.items()}
    for i, (node, kind, weights, swapped) in enumerate(candidates):
        folded = _folded_embedding(node, reads[i][0]) if not kind else None
        if folded is not None:
            specs.append(folded)
            continue
        if i in decomposed:
            kind, path, type_name, names = decomposed[i]
            specs.append(NodeSpec(node.op_type.lower(), kind, path, type_name, param_roles(kind, names), own=True,
                                  op_label=f"onnx.{node.op_type}"))
            continue
        if not kind:
            specs.append(None)
            continue
        path, type_name = _scope(node)
        own = None if type_name is not None else paths[path] == 1  # legacy export: a lone op is its module's
        if type_name is None:
            named = _weight_path(kind, weights, module.onnx_name)
            path, own = (named, True) if named is not None else (path, own)
        roles = param_roles(kind, weights) if kind in WEIGHT_KINDS | NORM_KINDS | {"embedding"} else {}
        specs.append(NodeSpec(node.op_type.lower(), kind, path, type_name or node.op_type, roles,
                              _layer_attrs(node, kind, swapped), own, op_label=f"onnx.{node.op_type}"))
    return specs


@contextmanager
def instrument_onnx(module: Any, collector: StatsCollector) -> Iterator[Any]:
    specs = plan_onnx(module)
    rows = LazyRows(collector, specs)  # type: ignore[arg-type]

    def hook(index: int, node: Any, outputs: tuple[Any, ...]) -> None:
        if specs[index] is not None and outputs and outputs[0] is not None:
            rows.observe(index, outputs[0])

    def forward(*args: Any, **kwargs: Any) -> Any:
        from gradcheck_cli.loading.onnx_model import check_feed
        from gradcheck_cli.onnx import OnnxUnsupportedError

        check_feed(module, args, kwargs)
        try:
            return module(*args, **kwargs)
        except OnnxUnsupportedError as exc:  # found only when run (a dtype, a dynamic attribute)
            raise ModelLoadError(first_line(exc), hint="export with another opset") from None

    def recurrent(index: int, node: Any, inputs: list, rerun: Any) -> None:
        info = rows.rows.get(index)
        if node.op_type in ONNX_RECURRENT and info is not None and collector.wants_time(info):
            batch_major = bool(_attr(node, "layout", 0))
            collector.observe_time(info, onnx_time_profile(inputs, rerun, batch_major, collector.seed + info.index))

    previous, previous_inputs = module.node_hook, module.input_hook
    module.node_hook, module.input_hook = hook, recurrent
    try:
        yield forward
    finally:
        module.node_hook, module.input_hook = previous, previous_inputs
