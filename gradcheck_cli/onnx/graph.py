"""Compiled (op-resolved, attribute-parsed) ONNX graphs and their execution loop.

The main graph and control-flow subgraphs (If/Loop/Scan bodies) share this
code.  Compilation resolves every node's implementation up front, so an
unsupported op anywhere -- including inside a branch that a given input would
not take -- is reported when the model is constructed, not halfway through an
analysis run.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

import onnx
import torch

from .dtypes import UnsupportedDtypeError, tensor_proto_to_torch
from .errors import OnnxUnsupportedError
from .registry import NodeContext, OpImpl, lookup, parse_attributes

Env = dict[str, Optional[torch.Tensor]]
NodeHook = Callable[[int, onnx.NodeProto, tuple[Optional[torch.Tensor], ...]], None]
InputHook = Callable[[int, onnx.NodeProto, list, Callable[[list], Any]], None]
"""(index, node, its input values, a function that runs the node on other inputs): for probes that
re-run one node (a recurrent op's through-time profile)."""


def node_inputs(node: onnx.NodeProto) -> list[str]:
    """Names a node reads, including outer-scope names used inside its subgraphs."""
    names = [x for x in node.input if x]
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            names.extend(sorted(graph_free_names(g)))
    return names


def graph_free_names(g: onnx.GraphProto) -> set[str]:
    """Values a (sub)graph reads from its enclosing scope."""
    defined = {i.name for i in g.input} | {i.name for i in g.initializer}
    used: set[str] = set()
    for n in g.node:
        used.update(x for x in node_inputs(n) if x not in defined)
        defined.update(n.output)
    used.update(o.name for o in g.output if o.name not in defined)
    return used


def topological_order(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Kahn's algorithm, stable w.r.t. file order (already sorted in valid models).

    Values not produced by any node are assumed to come from inputs,
    initializers or the outer scope."""
    nodes = list(graph.node)
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer[o] = i
    users: list[list[int]] = [[] for _ in nodes]
    remaining: list[int] = []
    for i, n in enumerate(nodes):
        deps = {producer[x] for x in node_inputs(n) if x in producer and producer[x] != i}
        remaining.append(len(deps))
        for j in deps:
            users[j].append(i)
    ready = deque(i for i, r in enumerate(remaining) if r == 0)
    order: list[int] = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for u in sorted(users[i]):
            remaining[u] -= 1
            if remaining[u] == 0:
                ready.append(u)
    if len(order) != len(nodes):
        raise ValueError("ONNX graph has a cycle")
    return [nodes[i] for i in order]


class CompiledGraph:
    """A graph ready to run: node order, implementations, contexts and value lifetimes."""

    def __init__(
        self,
        graph: onnx.GraphProto,
        opset_imports: dict[str, int],
        base_dir: str | None,
        constants: Optional[dict[str, torch.Tensor]] = None,
    ) -> None:
        self.name = graph.name
        self.input_names = [i.name for i in graph.input]
        self.output_names = [o.name for o in graph.output]
        # initializers of subgraphs are plain constants (the main graph passes its own as parameters)
        self.constants: dict[str, torch.Tensor] = constants if constants is not None else {
            t.name: tensor_proto_to_torch(t, base_dir) for t in graph.initializer
        }
        self.nodes = topological_order(graph)
        consumed = {x for n in self.nodes for x in node_inputs(n)} | set(self.output_names)
        self.impls: list[OpImpl] = []
        self.ctxs: list[NodeContext] = []
        for n in self.nodes:
            domain = "" if n.domain in ("", "ai.onnx") else n.domain
            version = opset_imports.get(domain)
            impl = lookup(domain, n.op_type, version, n.name)
            try:
                attrs = parse_attributes(n, base_dir)
            except UnsupportedDtypeError as e:
                raise OnnxUnsupportedError(n.op_type, domain, version, n.name, str(e)) from None
            subgraphs = {k: CompiledGraph(v, opset_imports, base_dir) for k, v in attrs.items()
                         if isinstance(v, onnx.GraphProto)}
            wanted = tuple(bool(o) and o in consumed for o in n.output)
            ctx = NodeContext(n, attrs, version or 0, len(n.output), wanted)
            ctx.subgraphs = subgraphs
            self.impls.append(impl)
            self.ctxs.append(ctx)
        keep = set(self.output_names)
        last: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            for x in node_inputs(n):
                last[x] = i
        self.free_after: list[list[str]] = [[] for _ in self.nodes]
        for name, i in last.items():
            if name not in keep:
                self.free_after[i].append(name)

    def __getstate__(self) -> dict:
        # op implementations include closures, which pickle cannot store: resolve them again on load
        state = self.__dict__.copy()
        del state["impls"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.impls = [lookup(c.node.domain, c.node.op_type, c.opset, c.node.name) for c in self.ctxs]

    def run(self, env: Env, hook: Optional[NodeHook] = None, input_hook: Optional[InputHook] = None) -> Env:
        """Execute the nodes on ``env`` (mutated in place): outputs added, dead values dropped."""
        dev = torch.get_default_device()
        for name, const in self.constants.items():
            env.setdefault(name, const.to(dev))
        for i, (node, impl, ctx) in enumerate(zip(self.nodes, self.impls, self.ctxs)):
            args = [env[x] if x else None for x in node.input]
            if ctx.subgraphs:
                ctx.scope = env
            try:
                res = impl.fn(ctx, args)
            except OnnxUnsupportedError:
                raise
            except UnsupportedDtypeError as e:
                raise ctx.unsupported(str(e)) from None
            except Exception as e:  # name the node: essential for debugging large graphs
                raise RuntimeError(f"error executing ONNX node {node.name!r} ({node.op_type}): {e}") from e
            finally:
                ctx.scope = None
            outs = (res,) if res is None or isinstance(res, torch.Tensor) else tuple(res)
            if len(outs) < len(node.output):
                outs = outs + (None,) * (len(node.output) - len(outs))
            for name, t in zip(node.output, outs):
                if name:
                    env[name] = t
            if hook is not None:
                hook(i, node, outs[: len(node.output)])
            if input_hook is not None:
                input_hook(i, node, args, lambda values, impl=impl, ctx=ctx: impl.fn(ctx, values))
            for name in self.free_after[i]:
                env.pop(name, None)
            del args, outs, res
        return env
