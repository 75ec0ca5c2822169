"""Operator registry: (domain, op_type) -> implementation with its supported opset range.

Each implementation is a plain function ``fn(ctx, inputs) -> Tensor | tuple``.
Implementations declare the range of *domain opset versions* (the model's
``opset_import`` for that domain) whose semantics they reproduce; version
dependent behaviour inside that range is handled by looking at ``ctx.opset``.
Keeping the range explicit means a model using a newer opset than we have
verified fails loudly with OnnxUnsupportedError instead of computing silently
wrong gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import onnx
import torch
from onnx import helper

from .dtypes import UnsupportedDtypeError, tensor_proto_to_torch
from .errors import OnnxUnsupportedError

#: newest default-domain opset whose op semantics were checked (the official node tests of onnx 1.23).
VERIFIED_OPSET = 28
#: newest opset accepted: the verified one, or the installed onnx's newest if that is older.  A newer
#: onnx may define new op versions; models using them are refused rather than run on a guess.
MAX_OPSET: int = min(onnx.defs.onnx_opset_version(), VERIFIED_OPSET)

OpResult = Union[torch.Tensor, None, Sequence[Optional[torch.Tensor]]]
#: ``fn(ctx, inputs)``; absent optional inputs are None (each op knows which of its inputs may be)
OpFn = Callable[["NodeContext", list[Any]], OpResult]


@dataclass(frozen=True)
class OpImpl:
    domain: str
    op_type: str
    fn: OpFn
    min_version: int
    max_version: int


_REGISTRY: dict[tuple[str, str], list[OpImpl]] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def _first_versions() -> dict[tuple[str, str], int]:
    """(domain, op) -> opset version that introduced the op, from the installed onnx."""
    first: dict[tuple[str, str], int] = {}
    for sch in onnx.defs.get_all_schemas_with_history():
        key = (_norm_domain(sch.domain), sch.name)
        first[key] = min(first.get(key, sch.since_version), sch.since_version)
    return first


_FIRST_VERSION: dict[tuple[str, str], int] = _first_versions()


def register(
    *op_types: str, since: int = 1, until: int | None = None, domain: str = ""
) -> Callable[[OpFn], OpFn]:
    """Decorator registering ``fn`` for ``op_types`` over opset versions [since, until]."""

    def deco(fn: OpFn) -> OpFn:
        for op in op_types:
            # never claim versions before the op existed (keeps supported_ops() honest)
            lo = max(since, _FIRST_VERSION.get((_norm_domain(domain), op), since))
            impl = OpImpl(_norm_domain(domain), op, fn, lo, until if until is not None else MAX_OPSET)
            _REGISTRY.setdefault((impl.domain, op), []).append(impl)
        return fn

    return deco


def lookup(domain: str, op_type: str, version: int | None, node_name: str = "") -> OpImpl:
    """Find the implementation for an op at a domain opset version or raise OnnxUnsupportedError."""
    impls = _REGISTRY.get((_norm_domain(domain), op_type))
    if not impls:
        raise OnnxUnsupportedError(op_type, domain, version, node_name, "no implementation for this op")
    if version is None:
        raise OnnxUnsupportedError(op_type, domain, version, node_name, "model does not import this domain")
    for impl in impls:
        if impl.min_version <= version <= impl.max_version:
            return impl
    ranges = ", ".join(f"{i.min_version}-{i.max_version}" for i in impls)
    raise OnnxUnsupportedError(op_type, domain, version, node_name, f"supported opset versions: {ranges}")


def supported_ops() -> dict[tuple[str, str], list[tuple[int, int]]]:
    """(domain, op_type) -> list of supported version ranges (for docs and tests)."""
    return {k: [(i.min_version, i.max_version) for i in v] for k, v in sorted(_REGISTRY.items())}


def parse_attributes(node: onnx.NodeProto, base_dir: str | None = None) -> dict[str, Any]:
    """Decode node attributes into Python values once, at model construction.

    Strings become ``str``; tensors become torch tensors; graphs stay GraphProto.
    """
    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.ref_attr_name:
            raise OnnxUnsupportedError(node.op_type, node.domain, None, node.name, "attribute references (functions)")
        if a.type == onnx.AttributeProto.TENSOR:
            out[a.name] = tensor_proto_to_torch(a.t, base_dir)
        elif a.type == onnx.AttributeProto.SPARSE_TENSOR:
            from .dtypes import sparse_to_dense

            out[a.name] = sparse_to_dense(a.sparse_tensor, base_dir)
        else:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8")
            elif isinstance(v, list) and v and isinstance(v[0], bytes):
                v = [s.decode("utf-8") for s in v]
            out[a.name] = v
    return out


@dataclass
class NodeContext:
    """Everything an op implementation may need besides its input tensors."""

    node: onnx.NodeProto
    attrs: dict[str, Any]
    opset: int
    num_outputs: int
    outputs_wanted: tuple[bool, ...] = field(default=())
    #: compiled subgraph attributes (If/Loop/Scan bodies), set by CompiledGraph
    subgraphs: dict[str, Any] = field(default_factory=dict)
    #: the executing graph's value environment while this node runs (outer scope for subgraphs)
    scope: Optional[dict[str, Any]] = None

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    def unsupported(self, detail: str) -> OnnxUnsupportedError:
        """Build (not raise) an error naming this node, for unsupported attribute values."""
        n = self.node
        return OnnxUnsupportedError(n.op_type, n.domain, self.opset, n.name, detail)

    def run_subgraph(self, attr: str, inputs: Sequence[Optional[torch.Tensor]]) -> tuple:
        """Run subgraph attribute ``attr`` with positional ``inputs``, seeing the outer scope."""
        g = self.subgraphs[attr]
        env = dict(self.scope or {})
        env.update(zip(g.input_names, inputs))
        g.run(env)
        return tuple(env[o] for o in g.output_names)

    def wants(self, i: int) -> bool:
        """Whether optional output ``i`` is consumed (lets ops skip extra work)."""
        return i < len(self.outputs_wanted) and self.outputs_wanted[i]


__all__ = [
    "MAX_OPSET",
    "NodeContext",
    "OpImpl",
    "UnsupportedDtypeError",
    "lookup",
    "parse_attributes",
    "register",
    "supported_ops",
]
