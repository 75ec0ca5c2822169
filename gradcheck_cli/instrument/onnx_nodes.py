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

from gradcheck_cli.instrument.graph_naming import LazyRows, NodeSpec, param_roles
from gradcheck_cli.kinds import NORM_KINDS, ONNX_KINDS, WEIGHT_KINDS
from gradcheck_cli.stats import StatsCollector


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


def plan_onnx(module: Any) -> list[NodeSpec | None]:
    """One spec per interpreter node (None: not a layer)."""
    params = {onnx: attr for attr, onnx in module.onnx_name.items()}
    candidates: list[tuple[Any, str, list[str]]] = []
    for node in module.nodes:
        kind = ONNX_KINDS.get(node.op_type)
        weights = [params[i] for i in node.input if i in params]
        if kind is None or (node.op_type in ("MatMul", "Gather") and not weights):
            candidates.append((node, "", []))
            continue
        candidates.append((node, kind, weights))
    paths = Counter(_scope(n)[0] for n, kind, _ in candidates if kind)
    specs: list[NodeSpec | None] = []
    for node, kind, weights in candidates:
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

    previous = module.node_hook
    module.node_hook = hook
    try:
        yield module
    finally:
        module.node_hook = previous
