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
from typing import Collection, Optional

import onnx
import torch
from torch import nn

from . import ops as _ops  # noqa: F401  (importing registers all op implementations)
from .dtypes import UnsupportedDtypeError, sparse_to_dense, tensor_proto_to_torch, to_torch_dtype
from .errors import OnnxUnsupportedError
from .graph import CompiledGraph, InputHook, NodeHook

#: (name, declared dims -- int, symbolic str or None for unknown --, dtype) of a graph input
InputSpec = tuple[str, list, torch.dtype]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _sanitise(name: str) -> str:
    """Turn an ONNX value name into a valid nn.Module attribute name (no '.', identifier)."""
    s = re.sub(r"\W", "_", name)
    if not s or s[0].isdigit():
        s = "p_" + s
    return s


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

    def __init__(self, model: onnx.ModelProto, base_dir: str | None = None,
                 trainable: Optional[Collection[str]] = None) -> None:
        """``trainable``: the float initializers to make Parameters (default: all of them); the other
        float initializers become buffers, constants that get no gradient (an attention mask)."""
        super().__init__()
        if model.functions:
            # Model-local functions (custom-domain subgraphs) are expanded so that
            # every executed node is a primitive op we implement.
            try:
                from onnx import inliner  # onnx >= 1.16
            except ImportError:
                f = model.functions[0]
                raise OnnxUnsupportedError(f.name, f.domain, None, "<model-local function>",
                                           "inlining model-local functions needs onnx >= 1.16") from None
            model = inliner.inline_local_functions(model)
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
            if t.dtype in _FLOAT_DTYPES and (trainable is None or name in trainable):
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

        # ---- nodes: order, implementations, attributes, value lifetimes
        self._graph = CompiledGraph(graph, self.opset_imports, base_dir, constants={})
        self.nodes: list[onnx.NodeProto] = self._graph.nodes

        self.node_hook: Optional[NodeHook] = None
        self.input_hook: Optional[InputHook] = None
        """``input_hook(i, node, inputs, rerun)`` after every main-graph node (``rerun(values)`` runs it again)."""

    @staticmethod
    def _decode(tp: onnx.TensorProto, base_dir: str | None) -> torch.Tensor:
        try:
            return tensor_proto_to_torch(tp, base_dir)
        except UnsupportedDtypeError as e:
            raise OnnxUnsupportedError("<initializer>", "", None, tp.name, str(e)) from None

    def initializer(self, onnx_name: str) -> torch.Tensor:
        """The parameter or buffer holding ONNX initializer ``onnx_name``."""
        return getattr(self, self._value_attr[onnx_name])

    def _device(self, env: dict[str, Optional[torch.Tensor]]) -> torch.device:
        """Where to compute: the device of the parameters/buffers, else of the first input."""
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        for name in self.input_names:
            t = env.get(name)
            if t is not None:
                return t.device
        return torch.device("cpu")

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
        for k, v in env.items():
            if v is not None and not isinstance(v, torch.Tensor):
                env[k] = torch.as_tensor(v)

        device = self._device(env)
        if device.type == "cpu":
            self._graph.run(env, self.node_hook, self.input_hook)
        else:
            # factory calls inside ops (arange, zeros, tensor, ...) follow the module's device
            with torch.device(device):
                self._graph.run(env, self.node_hook, self.input_hook)
        results: tuple[torch.Tensor, ...] = tuple(env[n] for n in self.output_names)  # type: ignore[misc]
        return results[0] if len(results) == 1 else results
