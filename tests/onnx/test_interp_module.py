"""OnnxModule interface: parameters, inputs, hooks, memory release and error reporting."""

from __future__ import annotations

import gc
import re
import weakref

import numpy as np
import onnx
import pytest
import torch
from interp_helpers import one_node_model
from onnx import TensorProto, helper, numpy_helper

from gradcheck_cli.onnx import OnnxModule, OnnxUnsupportedError


def _chain_model(n: int = 6) -> onnx.ModelProto:
    """x -> MatMul(W) -> Add(b.bias) -> Neg -> ... -> y, with a non-float initializer too."""
    nodes = [helper.make_node("MatMul", ["x", "layer.0/W"], ["t0"], name="mm"),
             helper.make_node("Add", ["t0", "layer.0.bias"], ["t1"], name="add")]
    for i in range(1, n):
        nodes.append(helper.make_node("Neg", [f"t{i}"], [f"t{i + 1}"], name=f"neg{i}"))
    nodes.append(helper.make_node("Reshape", [f"t{n}", "shape"], ["y"], name="reshape"))
    inits = [
        numpy_helper.from_array(np.ones((3, 4), np.float32), "layer.0/W"),
        numpy_helper.from_array(np.arange(4, dtype=np.float32), "layer.0.bias"),
        numpy_helper.from_array(np.array([-1], np.int64), "shape"),
    ]
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_parameters_buffers_and_names() -> None:
    m = OnnxModule(_chain_model())
    params = dict(m.named_parameters())
    assert sorted(m.onnx_name[k] for k in params) == ["layer.0.bias", "layer.0/W"]
    assert all("." not in k and p.requires_grad for k, p in params.items())
    assert [n for n, _ in m.named_buffers()] and not any(b.requires_grad for b in m.buffers())
    assert m.initializer("shape").dtype == torch.int64
    assert m.input_names == ["x"] and m.output_names == ["y"]
    assert m.input_specs == [("x", ["batch", 3], torch.float32)]
    assert m.opset == 17
    assert [n.name for n in m.nodes][:2] == ["mm", "add"]


def test_gradients_reach_initializers() -> None:
    m = OnnxModule(_chain_model())
    x = torch.randn(2, 3)
    m(x).sum().backward()
    w = m.initializer("layer.0/W")
    # y = -(x @ W + b) (5 Negs) -> dy/dW = -x^T 1
    torch.testing.assert_close(w.grad, -x.T @ torch.ones(2, 4))


def test_node_hook_and_positional_or_named_inputs() -> None:
    m = OnnxModule(_chain_model())
    seen: list[tuple[int, str, tuple]] = []
    m.node_hook = lambda i, node, outs: seen.append((i, node.op_type, tuple(o.shape for o in outs)))
    x = torch.randn(2, 3)
    y1 = m(x)
    assert [s[0] for s in seen] == list(range(len(m.nodes)))
    assert seen[0][1:] == ("MatMul", ((2, 4),))
    y2 = m(x=x)
    torch.testing.assert_close(y1, y2)
    with pytest.raises(TypeError):
        m(x, x)
    with pytest.raises(TypeError):
        m(z=x)


def test_intermediates_are_freed_after_last_use() -> None:
    """When node i runs, the output of node i-2 (last used by node i-1) must already be gone."""
    m = OnnxModule(_chain_model(8))
    refs: list[weakref.ref] = []
    alive_at: list[list[bool]] = []

    def hook(i, node, outs):
        alive_at.append([r() is not None for r in refs])
        refs.append(weakref.ref(outs[0]))

    m.node_hook = hook
    with torch.no_grad():
        m(torch.randn(2, 3))
    gc.collect()
    for i in range(2, len(alive_at)):
        assert not alive_at[i][i - 2], f"output of node {i - 2} still alive while node {i} runs"
        assert alive_at[i][i - 1]


def test_initializer_backed_input_is_optional_override() -> None:
    x = np.ones((2, 2), np.float32)
    node = helper.make_node("Add", ["x", "bias"], ["y"])
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2]),
         helper.make_tensor_value_info("bias", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        [numpy_helper.from_array(np.full((2, 2), 5, np.float32), "bias")])
    m = OnnxModule(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert m.input_names == ["x"]
    assert m(torch.from_numpy(x)).tolist() == [[6, 6], [6, 6]]
    assert m(torch.from_numpy(x), bias=torch.zeros(2, 2)).tolist() == [[1, 1], [1, 1]]


def test_multiple_outputs_return_tuple() -> None:
    x = np.arange(6, dtype=np.float32)
    m = OnnxModule(one_node_model("Split", {"x": x}, outputs=("a", "b"), opset=18, num_outputs=2))
    a, b = m(torch.from_numpy(x))
    assert a.tolist() == [0, 1, 2] and b.tolist() == [3, 4, 5]


def test_unsupported_op_names_op_domain_version_and_node() -> None:
    x = np.ones(3, np.float32)
    model = one_node_model("FrobnicateXYZ", {"x": x}, domain="com.example", node_name="my_custom_node")
    with pytest.raises(OnnxUnsupportedError) as ei:
        OnnxModule(model)
    msg = str(ei.value)
    assert "FrobnicateXYZ" in msg and "my_custom_node" in msg and "com.example" in msg and "opset 1" in msg


def test_supported_op_at_unsupported_opset_is_reported() -> None:
    x = np.ones(3, np.float32)
    model = one_node_model("Gelu", {"x": x}, opset=18, node_name="gelu_1")  # Gelu exists from opset 20
    with pytest.raises(OnnxUnsupportedError, match=r"'Gelu' \(ai.onnx opset 18\) at node 'gelu_1'"):
        OnnxModule(model)


def test_unsupported_attribute_value_is_reported_with_node() -> None:
    x = np.ones((1, 1, 4, 4), np.float32)
    model = one_node_model("Resize", {"x": x}, opset=19, node_name="rs", mode="lanczos",
                           initializers={"roi": np.zeros(0, np.float32), "scales": np.ones(4, np.float32)})
    with pytest.raises(OnnxUnsupportedError, match="rs.*lanczos"):
        OnnxModule(model)(torch.from_numpy(x))


def test_local_functions_are_inlined() -> None:
    fn = helper.make_function(
        "custom", "DoubleRelu", ["a"], ["b"],
        [helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Add", ["r", "r"], ["b"])],
        opset_imports=[helper.make_opsetid("", 17)])
    graph = helper.make_graph(
        [helper.make_node("DoubleRelu", ["x"], ["y"], domain="custom")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    model = helper.make_model(graph, functions=[fn],
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])
    assert OnnxModule(model)(torch.tensor([-1.0, 0.5, 2.0])).tolist() == [0.0, 1.0, 4.0]


def test_readme_lists_every_supported_op() -> None:
    from pathlib import Path

    from gradcheck_cli.onnx import supported_ops

    readme = (Path(__file__).resolve().parents[2] / "gradcheck_cli" / "onnx" / "README.md").read_text()
    section = readme.split("## Supported ops", 1)[1].split("##", 1)[0]
    listed = set(re.findall(r"\w+", section))
    missing = sorted({op for _, op in supported_ops()} - listed)
    assert not missing, f"README's op list lacks {missing}"


def test_module_survives_deepcopy_pickle_and_dtype_change() -> None:
    import copy
    import pickle

    m = OnnxModule(_chain_model())
    x = torch.randn(2, 3)
    want = m(x)
    torch.testing.assert_close(copy.deepcopy(m)(x), want)
    torch.testing.assert_close(pickle.loads(pickle.dumps(m))(x), want)
    torch.testing.assert_close(m.double()(x.double()), want.double(), rtol=1e-5, atol=1e-5)
