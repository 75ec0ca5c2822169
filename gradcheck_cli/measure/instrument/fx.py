"""torch.export front end: observer calls spliced into the unlifted FX graph.

``ExportedProgram.module()`` gives a GraphModule whose nodes carry ``nn_module_stack``; after
every node whose op is a layer (linear, conv, norms, activations...), we insert a call that
passes the node's value to the collector and returns it unchanged. The graph is restored and
recompiled on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import fx

from gradcheck_cli.errors import InputError, first_line

from gradcheck_cli.measure.instrument.graph_naming import LazyRows, NodeSpec, decomposed_norms, param_roles
from gradcheck_cli.measure.model_output import first_tensor
from gradcheck_cli.layers import OBSERVED_OP_KINDS, op_kind
from gradcheck_cli.measure.collector import StatsCollector

_ACTIVE: list[LazyRows] = []


def gradcheck_observe(value: Any, index: int) -> Any:
    """Graph-side probe: report ``value`` as node ``index`` of the active run and pass it through."""
    tensor = first_tensor(value)
    if tensor is not None and _ACTIVE:
        _ACTIVE[-1].observe(index, tensor)
    return value


def _module_of(node: fx.Node) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, type_ = list(stack.values())[-1]
    type_name = type_ if isinstance(type_, str) else getattr(type_, "__name__", str(type_))
    return path, type_name.rsplit(".", 1)[-1]


def _scalar(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _layer_attrs(kind: str, node: fx.Node) -> dict[str, float]:
    if kind == "leaky_relu":
        slope = _scalar(node.args[1]) if len(node.args) > 1 else _scalar(node.kwargs.get("negative_slope", 0.01))
        return {"negative_slope": slope if slope is not None else 0.01}
    if kind == "hardtanh" and len(node.args) >= 3:
        lo, hi = _scalar(node.args[1]), _scalar(node.args[2])
        if lo is not None and hi is not None:
            return {"min_val": lo, "max_val": hi}
    if kind == "conv":  # aten.convolution(x, w, b, stride, pad, dil, transposed, out_pad, groups); conv2d: groups 7th
        slot = 8 if "convolution" in str(node.target) else 6
        groups = _scalar(node.args[slot]) if len(node.args) > slot else None
        if groups is not None and groups > 1:
            return {"groups": groups}
    return {}


def plan_nodes(graph: fx.Graph) -> list[tuple[fx.Node, NodeSpec]]:
    """The nodes to observe, in graph order, with what their rows will say."""
    planned = []
    others: list[tuple[fx.Node, str, str, list[str]]] = []
    order: dict[fx.Node, int] = {}
    for position, node in enumerate(graph.nodes):
        order[node] = position
        if node.op != "call_function":
            continue
        op_name = str(node.target)
        kind = op_kind(op_name)
        path, type_name = _module_of(node)
        params = [a.target for a in node.all_input_nodes if a.op == "get_attr"]
        if kind not in OBSERVED_OP_KINDS:
            others.append((node, path, type_name, params))
            continue
        planned.append((node, NodeSpec(op_name, kind, path, type_name, param_roles(kind, params, op_name),
                                       _layer_attrs(kind, node))))
    observed = {spec.module_path for _, spec in planned}
    norms = decomposed_norms([(path, type_name, params) for _, path, type_name, params in others], observed)
    for position, (kind, path, type_name, params) in norms.items():
        node = others[position][0]
        planned.append((node, NodeSpec(str(node.target), kind, path, type_name, param_roles(kind, params), own=True)))
    return sorted(planned, key=lambda item: order[item[0]])


def _guarded(gm: fx.GraphModule):  # noqa: ANN202
    """The program's forward, with a failed shape guard reported as the bad input it is (exit 2)."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        try:
            return gm(*args, **kwargs)
        except (AssertionError, RuntimeError) as exc:
            if "Guard failed" not in str(exc) and "Expected input" not in str(exc):
                raise
            expected = [tuple(n.meta["val"].shape) for n in gm.graph.nodes
                        if n.op == "placeholder" and hasattr(n.meta.get("val"), "shape")]
            given = [tuple(a.shape) for a in (*args, *kwargs.values()) if hasattr(a, "shape")]
            raise InputError(
                f"the input does not fit the shapes the torch.export program was exported with ({first_line(exc)}): "
                f"exported with {', '.join(map(str, expected)) or 'unknown'}, given {', '.join(map(str, given))}",
                hint="pass inputs of those shapes, or export with dynamic_shapes= to allow others",
            ) from None

    return forward


@contextmanager
def instrument_fx(gm: fx.GraphModule, collector: StatsCollector) -> Iterator[Any]:
    graph = gm.graph
    planned = plan_nodes(graph)
    rows = LazyRows(collector, [spec for _, spec in planned])
    inserted: list[fx.Node] = []
    try:
        for position, (node, _) in enumerate(planned):
            with graph.inserting_after(node):
                probe = graph.call_function(gradcheck_observe, (node, position))
            node.replace_all_uses_with(probe, delete_user_cb=lambda user, probe=probe: user is not probe)
            inserted.append(probe)
        gm.recompile()
        _ACTIVE.append(rows)
        yield _guarded(gm)
    finally:
        if _ACTIVE and _ACTIVE[-1] is rows:
            _ACTIVE.pop()
        for probe in inserted:
            probe.replace_all_uses_with(probe.args[0])
            graph.erase_node(probe)
        gm.recompile()
