"""TorchScript front end: a rewritten, inlined copy of the forward graph with probe ops.

Loaded ScriptModules accept no forward hooks. Instead we copy ``forward``'s graph, inline every
submodule call (so shared submodule types get one node per call site), and after each layer op
insert ``gradcheck::observe(x, i)`` -- a dispatcher op whose Python kernel passes ``x`` to the
collector and returns it (declared as an alias, so the JIT does not copy). Layer names come from
each inlined node's module hierarchy. The loaded module itself is not modified: the rewritten
graph becomes a new function called with the module as ``self``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from gradcheck_cli.measure.instrument.graph_naming import (
    LazyRows,
    NodeSpec,
    decomposed_norms,
    param_roles,
    parse_torchscript_hierarchy,
)
from gradcheck_cli.layers import OBSERVED_OP_KINDS, op_kind
from gradcheck_cli.measure.collector import StatsCollector

_ACTIVE: list[LazyRows] = []
_LIBRARY: torch.library.Library | None = None


def _observe_kernel(x: torch.Tensor, index: int) -> torch.Tensor:
    if _ACTIVE:
        _ACTIVE[-1].observe(index, x)
    return x


def _register_probe_op() -> None:
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = torch.library.Library("gradcheck", "DEF")
        _LIBRARY.define("observe(Tensor(a) x, int layer) -> Tensor(a)")
        _LIBRARY.impl("observe", _observe_kernel, "CompositeImplicitAutograd")


def _walk(block: torch._C.Block | torch._C.Graph) -> Iterator[torch._C.Node]:
    for node in block.nodes():
        yield node
        for inner in node.blocks():
            yield from _walk(inner)


def _attribute_paths(graph: torch._C.Graph) -> dict[str, str]:
    """Value debug name -> dotted attribute path from ``self`` (``b1.fc.weight``)."""
    self_value = next(graph.inputs())
    paths = {self_value.debugName(): ""}
    for node in _walk(graph):
        if node.kind() == "prim::GetAttr":
            parent = paths.get(node.input().debugName())
            if parent is not None:
                name = node.s("name")
                paths[node.output().debugName()] = f"{parent}.{name}" if parent else name
    return paths


def _constant(value: torch._C.Value) -> float | None:
    node = value.node()
    if node.kind() == "prim::Constant" and node.hasAttribute("value"):
        try:
            result = value.toIValue()
        except Exception:  # noqa: BLE001 - not a constant we can read
            return None
        return float(result) if isinstance(result, (int, float)) and not isinstance(result, bool) else None
    return None


CONTAINERS = frozenset({"ModuleList", "ModuleDict", "ParameterList", "ParameterDict"})
"""Containers without a forward of their own: a traced graph's module hierarchy skips them."""


def module_names(module: torch.jit.ScriptModule) -> dict[str, str]:
    """A traced graph's module-hierarchy path -> the module's own attribute path.

    The hierarchy a node records skips containers that have no forward (``layers.0.fc`` is recorded
    as ``0.fc``: ModuleList is never called), so it is mapped back through the module tree, which has
    every name; a hierarchy path two modules share (two ModuleLists with a child ``0``) is left as is.
    """
    kinds = {name: getattr(sub, "original_name", type(sub).__name__) for name, sub in module.named_modules()}
    mapping: dict[str, str] = {}
    clashes: set[str] = set()
    for name in kinds:
        if not name:
            continue
        parts = name.split(".")
        kept = [part for i, part in enumerate(parts) if kinds.get(".".join(parts[: i + 1])) not in CONTAINERS]
        hierarchy = ".".join(kept)
        if hierarchy in mapping and mapping[hierarchy] != name:
            clashes.add(hierarchy)
        mapping[hierarchy] = name
    return {h: name for h, name in mapping.items() if h not in clashes and h != name}


def plan_graph(graph: torch._C.Graph, names: dict[str, str] | None = None) -> list[tuple[torch._C.Node, NodeSpec]]:
    paths = _attribute_paths(graph)
    names = names or {}
    planned = []
    others: list[tuple[torch._C.Node, str, str, list[str]]] = []
    order: dict[torch._C.Node, int] = {}
    for position, node in enumerate(list(_walk(graph))):
        order[node] = position
        op_name = node.kind()
        if not op_name.startswith("aten::") or node.outputsSize() == 0:
            continue
        if not isinstance(node.outputsAt(0).type(), torch._C.TensorType):
            continue
        kind = op_kind(op_name)
        path, type_name = parse_torchscript_hierarchy(node.getModuleHierarchy())
        path = names.get(path, path)
        params = [paths[v.debugName()] for v in node.inputs() if paths.get(v.debugName())]
        if kind not in OBSERVED_OP_KINDS:
            others.append((node, path, type_name, params))
            continue
        attrs: dict[str, float] = {}
        inputs = list(node.inputs())
        slope = _constant(inputs[1]) if kind == "leaky_relu" and len(inputs) > 1 else None
        if slope is not None:
            attrs["negative_slope"] = slope
        if kind == "conv":  # aten::_convolution/convolution(x, w, b, stride, pad, dil, transposed, out_pad, groups, ...)
            slot = 8 if "convolution" in op_name else 6  # aten::conv1d/2d/3d(x, w, b, stride, pad, dil, groups)
            groups = _constant(inputs[slot]) if len(inputs) > slot else None
            if groups is not None and groups > 1:
                attrs["groups"] = groups
        planned.append((node, NodeSpec(op_name, kind, path, type_name, param_roles(kind, params, op_name), attrs)))
    observed = {spec.module_path for _, spec in planned}
    norms = decomposed_norms([(path, type_name, params) for _, path, type_name, params in others], observed)
    for position, (kind, path, type_name, params) in norms.items():
        node = others[position][0]
        planned.append((node, NodeSpec(node.kind(), kind, path, type_name, param_roles(kind, params), own=True)))
    return sorted(planned, key=lambda item: order[item[0]])


def _splice_probes(graph: torch._C.Graph, planned: list[tuple[torch._C.Node, NodeSpec]]) -> None:
    for position, (node, _) in enumerate(planned):
        out = node.outputsAt(0)
        index = graph.insertConstant(position)
        probe = graph.create("gradcheck::observe", [out, index], 1)
        probe.insertAfter(node)
        index.node().moveBefore(probe)
        probe.output().setType(out.type())
        out.replaceAllUsesAfterNodeWith(probe, probe.output())


_PROBED: weakref.WeakKeyDictionary[Any, tuple[Any, Any, list[NodeSpec]]] = weakref.WeakKeyDictionary()


def _probed(module: torch.jit.ScriptModule) -> tuple[Any, list[NodeSpec]]:
    """The probed forward function of ``module`` and its probes' specs, built once per module and forward
    method: copying, inlining, planning and splicing the graph took 8.7 ms a call on the 30-layer MLP (every
    analysis, every logged training step), and the probes find their rows at run time (``_ACTIVE``)."""
    source = module.forward.graph  # the same object on every access while the method stands
    cached = _PROBED.get(module)
    if cached is not None and cached[0] is source:
        return cached[1], cached[2]
    graph = source.copy()
    torch._C._jit_pass_inline(graph)
    planned = plan_graph(graph, module_names(module))
    _splice_probes(graph, planned)
    function = torch._C._create_function_from_graph("gradcheck_forward", graph)
    specs = [spec for _, spec in planned]
    _PROBED[module] = (source, function, specs)
    return function, specs


@contextmanager
def instrument_torchscript(module: torch.jit.ScriptModule, collector: StatsCollector) -> Iterator[Any]:
    _register_probe_op()
    function, specs = _probed(module)
    rows = LazyRows(collector, specs)
    _ACTIVE.append(rows)

    def forward(*args: Any, **kwargs: Any) -> Any:
        # The profiling executor could fuse probes away into differentiable subgraphs: run unoptimised.
        with torch.jit.optimized_execution(False):
            return function(module._c, *args, **kwargs)

    try:
        yield forward
    finally:
        if _ACTIVE and _ACTIVE[-1] is rows:
            _ACTIVE.pop()
