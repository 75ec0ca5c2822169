"""Helpers to build one-node ONNX models and run them through OnnxModule / onnxruntime."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from gradcheck_cli.onnx import OnnxModule

_NP_TO_ONNX = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.bool_): TensorProto.BOOL,
}


def one_node_model(
    op: str,
    inputs: dict[str, np.ndarray],
    outputs: Sequence[str] = ("y",),
    opset: int = 18,
    initializers: dict[str, np.ndarray] | None = None,
    domain: str = "",
    node_name: str = "n0",
    **attrs: Any,
) -> onnx.ModelProto:
    """A model with a single node; ``inputs`` become graph inputs, ``initializers`` initializers.
    Empty-string keys in ``inputs`` denote omitted optional inputs."""
    initializers = initializers or {}
    names = list(inputs) + list(initializers)
    node = helper.make_node(op, names, list(outputs), name=node_name, domain=domain, **attrs)
    g_inputs = [
        helper.make_tensor_value_info(k, _NP_TO_ONNX[v.dtype], list(v.shape)) for k, v in inputs.items() if k
    ]
    # outputs take the first input's element type (all single-node tests here are type-preserving)
    first = next(iter(v for k, v in {**inputs, **initializers}.items() if k))
    g_outputs = [helper.make_tensor_value_info(o, _NP_TO_ONNX[first.dtype], None) for o in outputs if o]
    inits = [numpy_helper.from_array(v, k) for k, v in initializers.items()]
    graph = helper.make_graph([node], "g", g_inputs, g_outputs, inits)
    imports = [helper.make_opsetid("", opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=imports, ir_version=8)


def run_ours(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    m = OnnxModule(model)
    with torch.no_grad():
        out = m(**{k: torch.from_numpy(v) for k, v in inputs.items() if k})
    outs = (out,) if isinstance(out, torch.Tensor) else out
    return [o.numpy() for o in outs]


def run_ort(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v for k, v in inputs.items() if k})
