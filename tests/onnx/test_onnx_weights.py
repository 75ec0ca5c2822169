"""Weights an exporter disguised: in Constant nodes, behind a Transpose, as a pre-transposed copy of a tied
weight, merged into one tensor; and constants that are not weights (a mask). Each hand-built graph must
give the report of the same model written with plain initializers (issue 15)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from gradcheck_cli import analyze
from gradcheck_cli.diagnose.init_advice import fans
from gradcheck_cli.onnx.fold import fold_constants

RNG = np.random.default_rng(0)
W1 = RNG.standard_normal((8, 4)).astype(np.float32)  # Gemm transB=1: (out, in), as nn.Linear
B1 = RNG.standard_normal(8).astype(np.float32)
W2 = RNG.standard_normal((8, 3)).astype(np.float32)  # MatMul: (in, out)
B2 = np.zeros(3, np.float32)
X = torch.from_numpy(RNG.standard_normal((16, 4)).astype(np.float32))


def _save(tmp_path: Path, nodes: list, initializers: list, name: str = "m.onnx", inputs: list | None = None,
          out: list | None = None) -> str:
    graph = helper.make_graph(
        nodes, "g", inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out or [16, 3])], initializer=initializers)
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return str(path)


def _mlp(tmp_path: Path, w1: tuple, b1: tuple, w2: tuple, b2: tuple, name: str) -> str:
    """x -> Gemm(w1, b1) -> Relu -> MatMul(w2) -> Add(b2): each weight given as (its value name, the nodes
    that make it, the initializers they read)."""
    nodes, inits = [], []
    for _, made, read in (w1, b1, w2, b2):
        nodes += made
        inits += read
    nodes += [helper.make_node("Gemm", ["x", w1[0], b1[0]], ["h"], name="/fc1/Gemm", transB=1),
              helper.make_node("Relu", ["h"], ["r"], name="/act/Relu"),
              helper.make_node("MatMul", ["r", w2[0]], ["m"], name="/fc2/MatMul"),
              helper.make_node("Add", ["m", b2[0]], ["y"], name="/fc2/Add")]
    return _save(tmp_path, nodes, inits, name)


def _plain(name: str, value: np.ndarray) -> tuple:
    return name, [], [numpy_helper.from_array(value, name)]


def _constant(name: str, value: np.ndarray) -> tuple:
    return name, [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value))], []


def _grads(path: str) -> dict[str, tuple]:
    report = analyze(path, X, fail_on="none")
    return {l.name: (l.grad.weight_norm, l.grad.bias_norm, l.init and (l.init.fan_in, l.init.fan_out))
            for l in report.layers if l.kind == "linear"}


def _same(got: dict, want: dict) -> None:
    assert set(got) == set(want) == {"fc1", "fc2"}
    for layer, (weight, bias, fan) in want.items():
        assert got[layer][0] == pytest.approx(weight, rel=1e-5), layer
        assert got[layer][1] == pytest.approx(bias, rel=1e-5, abs=1e-7), layer
        assert got[layer][2] == fan, layer


@pytest.fixture
def plain(tmp_path: Path) -> dict:
    return _grads(_mlp(tmp_path, _plain("w1", W1), _plain("b1", B1), _plain("w2", W2), _plain("b2", B2), "plain.onnx"))


def test_weights_in_constant_nodes_are_parameters(tmp_path: Path, plain: dict) -> None:
    path = _mlp(tmp_path, _constant("w1", W1), _constant("b1", B1), _constant("w2", W2), _constant("b2", B2), "c.onnx")
    _same(_grads(path), plain)  # was exit 3 "the model has no parameters"


def test_weights_computed_from_initializers_are_folded_into_parameters(tmp_path: Path, plain: dict) -> None:
    w1 = ("w1", [helper.make_node("Cast", ["w1_64"], ["w1"], to=TensorProto.FLOAT)],
          [numpy_helper.from_array(W1.astype(np.float64), "w1_64")])
    b1 = ("b1", [helper.make_node("Identity", ["b1_c"], ["b1"])], [numpy_helper.from_array(B1, "b1_c")])
    w2 = ("w2", [helper.make_node("Transpose", ["w2_t"], ["w2"], perm=[1, 0])], [numpy_helper.from_array(W2.T.copy(), "w2_t")])
    b2 = ("b2", [helper.make_node("ConstantOfShape", ["b2_shape"], ["b2"],
                                  value=numpy_helper.from_array(np.zeros(1, np.float32)))],
          [numpy_helper.from_array(np.array([3], np.int64), "b2_shape")])
    path = _mlp(tmp_path, w1, b1, w2, b2, "folded.onnx")
    _same(_grads(path), plain)
    report = analyze(path, X, fail_on="none")
    assert {p.name for p in report.parameters} == {"w1_64", "b1_c", "w2_t", "b2"}  # a fold takes its source's name
    assert any("evaluated at load time" in note for note in report.notes)


def test_a_float_constant_that_is_not_a_weight_operand_is_not_a_parameter(tmp_path: Path) -> None:
    mask = numpy_helper.from_array(np.triu(np.full((16, 8), -1e9, np.float32), 1), "mask")
    path = _save(tmp_path, [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="/fc1/Gemm", transB=1),
                            helper.make_node("Add", ["h", "mask"], ["y"], name="/Add")],
                 [numpy_helper.from_array(W1, "w1"), numpy_helper.from_array(B1, "b1"), mask,
                  numpy_helper.from_array(np.float32(0.5), "half")], out=[16, 8])
    report = analyze(path, X, fail_on="none")
    assert {p.name for p in report.parameters} == {"w1", "b1"}
    assert not any("one-element float initializers" in note for note in report.notes)


def _lm(tmp_path: Path, head: tuple, name: str) -> str:
    """Tokens -> Gather(E) -> Tanh -> MatMul(head): the LM head reads the embedding, transposed."""
    emb = np.random.default_rng(1).standard_normal((10, 6)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["E", "ids"], ["e"], name="/embed/Gather"),
             helper.make_node("Tanh", ["e"], ["t"], name="/act/Tanh"), *head[1],
             helper.make_node("MatMul", ["t", head[0]], ["y"], name="/lm_head/MatMul")]
    inits = [numpy_helper.from_array(emb, "E")] + ([numpy_helper.from_array(emb.T.copy(), "E_copy")] if head[0] == "E_copy" else [])
    return _save(tmp_path, nodes, inits, name, [helper.make_tensor_value_info("ids", TensorProto.INT64, [4, 5])],
                 [4, 5, 10])


def test_a_tied_lm_head_is_a_row_whose_weight_is_the_embedding(tmp_path: Path) -> None:
    """Read through Transpose(E), or stored as a transposed copy of E (as dynamo writes GPT-2's head): one
    leaf, so both rows show the tie's summed gradient, as torch does for a tied parameter."""
    ids = torch.randint(0, 10, (4, 5), generator=torch.Generator().manual_seed(0))
    live = _lm(tmp_path, ("Et", [helper.make_node("Transpose", ["E"], ["Et"], perm=[1, 0])]), "live.onnx")
    copy = _lm(tmp_path, ("E_copy", []), "copy.onnx")
    reports = [analyze(path, ids, fail_on="none") for path in (live, copy)]
    for report in reports:
        rows = {l.name: l for l in report.layers if l.kind in ("linear", "embedding")}
        assert set(rows) == {"embed", "lm_head"}
        assert rows["embed"].grad.weight_norm == pytest.approx(rows["lm_head"].grad.weight_norm, rel=1e-6)
        assert [p.name for p in report.parameters] == ["E"]
        assert (rows["lm_head"].init.fan_in, rows["lm_head"].init.fan_out) == (6, 10)
    assert reports[0].layers[0].grad.weight_norm == pytest.approx(reports[1].layers[0].grad.weight_norm, rel=1e-6)
    assert any("transposed copy" in note for note in reports[1].notes)


def test_merged_zero_biases_written_as_identities_get_one_parameter_each(tmp_path: Path) -> None:
    """The legacy exporter writes every zero bias but the first as ``Identity(0.bias)``."""
    w = [numpy_helper.from_array(RNG.standard_normal((4, 4)).astype(np.float32), f"{i}.weight") for i in (0, 2)]
    path = _save(tmp_path, [helper.make_node("Identity", ["0.bias"], ["2.bias"]),
                            helper.make_node("Gemm", ["x", "0.weight", "0.bias"], ["h"], name="/0/Gemm", transB=1),
                            helper.make_node("Relu", ["h"], ["r"], name="/1/Relu"),
                            helper.make_node("Gemm", ["r", "2.weight", "2.bias"], ["y"], name="/2/Gemm", transB=1)],
                 [*w, numpy_helper.from_array(np.zeros(4, np.float32), "0.bias")], out=[16, 4])
    report = analyze(path, X, fail_on="none")
    assert {p.name for p in report.parameters} == {"0.weight", "0.bias", "2.weight", "2.bias"}
    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4))
    with torch.no_grad():
        for i in (0, 2):
            module[i].weight.copy_(torch.from_numpy(numpy_helper.to_array(w[i // 2])))
            module[i].bias.zero_()
    eager = {l.name: l.grad.bias_norm for l in analyze(module, X, fail_on="none").layers if l.kind == "linear"}
    assert {l.name: l.grad.bias_norm for l in report.layers if l.kind == "linear"} == pytest.approx(eager, rel=1e-5)


def test_folding_leaves_random_and_input_dependent_nodes_live() -> None:
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones(3, np.float32))),
         helper.make_node("RandomNormal", [], ["r"], shape=[3]),
         helper.make_node("Add", ["x", "c"], ["s"]), helper.make_node("Add", ["s", "r"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    folded = fold_constants(model)
    assert folded.nodes == 1 and [n.op_type for n in model.graph.node] == ["RandomNormal", "Add", "Add"]
    assert [t.name for t in model.graph.initializer] == ["c"]


def test_a_grouped_conv_fan_out_counts_one_group(tmp_path: Path) -> None:
    """Depthwise: each input channel reaches out/groups outputs; torch.nn.init would say out x kernel."""
    assert fans("conv", (8, 1, 3, 3), groups=8) == (9, 9)
    assert fans("conv", (8, 2, 3, 3), groups=4) == (18, 18)
    assert fans("conv", (8, 2, 3, 3)) == (18, 72)
    weight = numpy_helper.from_array(RNG.standard_normal((8, 2, 3, 3)).astype(np.float32), "conv.weight")
    path = _save(tmp_path, [helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="/conv/Conv", group=4, pads=[1] * 4)],
                 [weight], inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 5, 5])], out=[2, 8, 5, 5])
    row = next(l for l in analyze(path, torch.randn(2, 8, 5, 5), fail_on="none").layers if l.kind == "conv")
    assert row.name == "conv" and (row.init.fan_in, row.init.fan_out) == (18, 18)
