"""ONNX front end: the interpreter's per-node callback feeds the collector.

Layer names follow the module tree the exporter recorded: the dynamo exporter's
``pkg.torch.onnx.name_scopes``/``class_hierarchy`` metadata (``0.fc``, ``0.sigmoid``, exactly as
for the PyTorch model), or the legacy exporter's node names (``/layers.0/fc/Gemm`` -> ``layers.0.fc``).
"""

from __future__ import annotations

import ast
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


def _bias_adds(module: Any, params: dict[str, str]) -> dict[int, int]:
    """MatMul (weight initializer) -> the Add of a bias initializer that completes it as a Linear.

    Exporters write ``x @ W + b`` for Linear layers on >2-d inputs; the layer's output is the Add's.
    """
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(module.nodes):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    fused = {}
    for i, node in enumerate(module.nodes):
        if node.op_type != "MatMul" or not any(n in params for n in node.input):
            continue
        users = consumers.get(node.output[0], [])
        if len(users) == 1:
            add = module.nodes[users[0]]
            if add.op_type == "Add" and any(n in params for n in add.input if n != node.output[0]):
                fused[i] = users[0]
    return fused


def plan_onnx(module: Any) -> list[NodeSpec | None]:
    """One spec per interpreter node (None: not a layer)."""
    params = {onnx: attr for attr, onnx in module.onnx_name.items()}
    fused = _bias_adds(module, params)
    moved = {add: matmul for matmul, add in fused.items()}
    candidates: list[tuple[Any, str, list[str]]] = []
    for i, node in enumerate(module.nodes):
        kind = ONNX_KINDS.get(node.op_type)
        weights = [params[n] for n in node.input if n in params]
        if i in fused:  # observed at its bias Add instead
            candidates.append((node, "", []))
        elif i in moved:  # the Add that finishes a MatMul layer: named and weighted as the MatMul
            matmul = module.nodes[moved[i]]
            candidates.append((matmul, "linear", [params[n] for n in matmul.input if n in params] + weights))
        elif kind is None or (node.op_type in ("MatMul", "Gather") and not weights):
            candidates.append((node, "", []))
        else:
            candidates.append((node, kind, weights))
    paths = Counter(_scope(n)[0] for n, kind, _ in candidates if kind)
    unobserved = [i for i, (_, kind, _) in enumerate(candidates) if not kind]
    norms = decomposed_norms([(*_scope(candidates[i][0]), [params[n] for n in candidates[i][0].input if n in params])
                              for i in unobserved], set(paths))
    specs: list[NodeSpec | None] = []
    decomposed = {unobserved[position]: norm for position, norm in norms.items()}
    for i, (node, kind, weights) in enumerate(candidates):
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
        attrs: dict[str, float] = {}
        if kind == "leaky_relu":
            attrs["negative_slope"] = _attr(node, "alpha", 0.01)
        if node.op_type == "MatMul" or (node.op_type == "Gemm" and not _attr(node, "transB", 0)):
            attrs["transposed_weight"] = 1.0  # weight stored (in, out)
        roles = param_roles(kind, weights) if kind in WEIGHT_KINDS | NORM_KINDS | {"embedding"} else {}
        specs.append(NodeSpec(node.op_type.lower(), kind, path, type_name or node.op_type, roles, attrs, own,
                              op_label=f"onnx.{node.op_type}"))
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
