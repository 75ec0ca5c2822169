"""OnnxModule: execute an ONNX graph node by node with differentiable torch ops.

Why an interpreter and not a converter: converters (onnx2torch, onnx2pytorch)
fail on many dynamo exports and pull in torchvision.  Interpreting the graph
keeps the ONNX semantics exact (every node is one function call we can test
against the official backend node tests), makes every float initializer a
trainable leaf so gradients can be inspected per ONNX initializer, and gives a
natural per-node hook for activation statistics.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Callable, Optional

import onnx
import torch
from torch import nn

from . import ops as _ops  # noqa: F401  (importing registers all op implementations)
from .dtypes import UnsupportedDtypeError, sparse_to_dense, tensor_proto_to_torch, to_torch_dtype
from .errors import OnnxUnsupportedError
from .registry import NodeContext, OpImpl, lookup, parse_attributes

NodeHook = Callable[[int, onnx.NodeProto, tuple[Optional[torch.Tensor], ...]], None]
InputSpec = tuple[str, list, torch.dtype]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _sanitise(name: str) -> str:
    """Turn an ONNX value name into a valid nn.Module attribute name (no '.', identifier)."""
    s = re.sub(r"\W", "_", name)
    if not s or s[0].isdigit():
        s = "p_" + s
    return s


def _topological_order(graph: onnx.GraphProto, available: set[str]) -> list[onnx.NodeProto]:
    """Kahn's algorithm, stable w.r.t. the file order (which is already sorted for valid models)."""
    nodes = list(graph.node)
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer[o] = i
    deps: list[set[int]] = []
    users: list[list[int]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        d = {producer[x] for x in _node_inputs(n) if x in producer and x not in available and producer[x] != i}
        deps.append(d)
        for j in d:
            users[j].append(i)
    ready = deque(i for i, d in enumerate(deps) if not d)
    order: list[int] = []
    remaining = [len(d) for d in deps]
    while ready:
        i = ready.popleft()
        order.append(i)
        for u in sorted(users[i]):
            remaining[u] -= 1
            if remaining[u] == 0:
                ready.append(u)
    if len(order) != len(nodes):
        raise ValueError("ONNX graph has a cycle or references undefined values")
    return [nodes[i] for i in order]


def _node_inputs(node: onnx.NodeProto) -> list[str]:
    """Names a node reads, including outer-scope names used inside its subgraphs."""
    names = [x for x in node.input if x]
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            names.extend(_graph_free_names(g))
    return names


def _graph_free_names(g: onnx.GraphProto) -> set[str]:
    defined = {i.name for i in g.input} | {i.name for i in g.initializer}
    used: set[str] = set()
    for n in g.node:
        used.update(x for x in _node_inputs(n) if x not in defined)
        defined.update(n.output)
    used.update(o.name for o in g.output if o.name not in defined)
    return used


def _value_spec(vi: onnx.ValueInfoProto) -> InputSpec:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        raise OnnxUnsupportedError("<graph input>", "", None, vi.name, "only tensor graph inputs are supported")
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    try:
        dtype = to_torch_dtype(tt.elem_type)
    except UnsupportedDtypeError as e:
        raise OnnxUnsupportedError("<graph input>", "", None, vi.name, str(e)) from None
    return (vi.name, dims, dtype)


class OnnxModule(nn.Module):
    """A torch module that runs an ONNX ModelProto.

    Float initializers are ``nn.Parameter`` (requires_grad=True) registered under
    sanitised names; ``onnx_name`` maps those back to the ONNX names.  Non-float
    initializers are buffers.  ``node_hook(i, node, outputs)`` is called after
    every main-graph node.
    """

    def __init__(self, model: onnx.ModelProto, base_dir: str | None = None) -> None:
        super().__init__()
        if model.functions:
            # Model-local functions (custom-domain subgraphs) are expanded so that
            # every executed node is a primitive op we implement.
            from onnx import inliner

            model = inliner.inline_local_functions(model)
        self._base_dir = base_dir
        graph = model.graph
        self.opset_imports: dict[str, int] = {}
        for o in model.opset_import:
            self.opset_imports["" if o.domain in ("", "ai.onnx") else o.domain] = o.version
        self.opset: int = self.opset_imports.get("", 0)

        # ---- initializers -> parameters / buffers
        self.onnx_name: dict[str, str] = {}
        self._value_attr: dict[str, str] = {}  # ONNX value name -> attribute holding it
        used: set[str] = set()
        inits: list[tuple[str, torch.Tensor]] = []
        for tp in graph.initializer:
            inits.append((tp.name, self._decode(tp, base_dir)))
        for sp in graph.sparse_initializer:
            inits.append((sp.values.name, sparse_to_dense(sp, base_dir)))
        for name, t in inits:
            attr = _sanitise(name)
            base, k = attr, 1
            while attr in used or hasattr(self, attr):
                attr, k = f"{base}_{k}", k + 1
            used.add(attr)
            if t.dtype in _FLOAT_DTYPES:
                self.register_parameter(attr, nn.Parameter(t, requires_grad=True))
                self.onnx_name[attr] = name
            else:
                self.register_buffer(attr, t)
            self._value_attr[name] = attr

        init_names = set(self._value_attr)
        self.input_names: list[str] = [i.name for i in graph.input if i.name not in init_names]
        self.optional_input_names: list[str] = [i.name for i in graph.input if i.name in init_names]
        self.output_names: list[str] = [o.name for o in graph.output]
        self.input_specs: list[InputSpec] = [_value_spec(i) for i in graph.input if i.name not in init_names]
        self.graph_input_order: list[str] = [i.name for i in graph.input]

        # ---- nodes: order, implementations, attributes
        self.nodes: list[onnx.NodeProto] = _topological_order(graph, set(self.input_names) | init_names)
        consumed = {x for n in self.nodes for x in _node_inputs(n)}
        self._impls: list[OpImpl] = []
        self._ctxs: list[NodeContext] = []
        for n in self.nodes:
            domain = "" if n.domain in ("", "ai.onnx") else n.domain
            version = self.opset_imports.get(domain)
            impl = lookup(domain, n.op_type, version, n.name)
            try:
                attrs = parse_attributes(n, base_dir)
            except UnsupportedDtypeError as e:
                raise OnnxUnsupportedError(n.op_type, domain, version, n.name, str(e)) from None
            wanted = tuple(bool(o) and (o in consumed or o in self.output_names) for o in n.output)
            self._impls.append(impl)
            self._ctxs.append(NodeContext(n, attrs, version or 0, len(n.output), wanted))

        # ---- last use of each value so intermediates are freed like in eager torch
        keep = set(self.output_names)
        last: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            for x in _node_inputs(n):
                last[x] = i
        self._free_after: list[list[str]] = [[] for _ in self.nodes]
        for name, i in last.items():
            if name not in keep:
                self._free_after[i].append(name)

        self.node_hook: Optional[NodeHook] = None

    @staticmethod
    def _decode(tp: onnx.TensorProto, base_dir: str | None) -> torch.Tensor:
        try:
            return tensor_proto_to_torch(tp, base_dir)
        except UnsupportedDtypeError as e:
            raise OnnxUnsupportedError("<initializer>", "", None, tp.name, str(e)) from None

    def initializer(self, onnx_name: str) -> torch.Tensor:
        """The parameter or buffer holding ONNX initializer ``onnx_name``."""
        return getattr(self, self._value_attr[onnx_name])

    def forward(self, *inputs: torch.Tensor, **named: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if len(inputs) > len(self.input_names):
            raise TypeError(f"expected at most {len(self.input_names)} positional inputs, got {len(inputs)}")
        env: dict[str, Optional[torch.Tensor]] = {}
        for name, attr in self._value_attr.items():
            env[name] = getattr(self, attr)
        for name, t in zip(self.input_names, inputs):
            env[name] = t
        allowed = set(self.input_names) | set(self.optional_input_names)
        for name, t in named.items():
            if name not in allowed:
                raise TypeError(f"unknown graph input {name!r}")
            if name in self.input_names[: len(inputs)]:
                raise TypeError(f"graph input {name!r} given twice")
            env[name] = t
        missing = [n for n in self.input_names if n not in env]
        if missing:
            raise TypeError(f"missing graph inputs: {missing}")
        env = {k: (torch.as_tensor(v) if v is not None and not isinstance(v, torch.Tensor) else v) for k, v in env.items()}

        hook = self.node_hook
        for i, (node, impl, ctx) in enumerate(zip(self.nodes, self._impls, self._ctxs)):
            args = [env[x] if x else None for x in node.input]
            try:
                res = impl.fn(ctx, args)
            except OnnxUnsupportedError:
                raise
            except UnsupportedDtypeError as e:
                raise ctx.unsupported(str(e)) from None
            except Exception as e:  # add the node to the message: essential for debugging large graphs
                raise RuntimeError(f"error executing ONNX node {node.name!r} ({node.op_type}): {e}") from e
            outs = (res,) if res is None or isinstance(res, torch.Tensor) else tuple(res)
            if len(outs) < len(node.output):
                outs = outs + (None,) * (len(node.output) - len(outs))
            for name, t in zip(node.output, outs):
                if name:
                    env[name] = t
            if hook is not None:
                hook(i, node, outs[: len(node.output)])
            for name in self._free_after[i]:
                env.pop(name, None)
            del args, outs, res

        results = tuple(env[n] for n in self.output_names)
        return results[0] if len(results) == 1 else results
