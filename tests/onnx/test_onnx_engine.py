"""ONNX models through `analyze` and the CLI: same report as the PyTorch model they were exported from."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from gradcheck_cli import analyze

pytest.importorskip("onnxscript")  # torch.onnx.export(dynamo=True) needs it


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(12, 32)
        self.fc2 = nn.Linear(32, 32)
        self.out = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.fc2(torch.relu(self.fc1(x)))))


class TokenNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.fc = nn.Linear(16, 16)
        self.head = nn.Linear(16, 50)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc(self.embed(tokens))))


def _export(model: nn.Module, args: tuple, path: Path, dynamo: bool, **kwargs) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=dynamo, **kwargs)
    return path


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "legacy"])
def test_onnx_report_matches_the_pytorch_model(tmp_path, dynamo):
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(64, 12)
    path = _export(model, (x,), tmp_path / "net.onnx", dynamo)
    theirs = analyze(model, x)
    ours = analyze(str(path), x, verify=True)
    assert ours.model.format == "onnx"
    assert any("verified against onnxruntime" in n for n in ours.notes)

    assert [(l.name, l.kind) for l in ours.layers] == [(l.name, l.kind) for l in theirs.layers]
    for a, b in zip(ours.layers, theirs.layers):
        assert a.activation.std == pytest.approx(b.activation.std, rel=1e-4), a.name
        assert a.grad.output_rms == pytest.approx(b.grad.output_rms, rel=1e-4), a.name
    norms = {p.name: p.grad_norm for p in theirs.parameters}
    assert {p.name: p.grad_norm for p in ours.parameters} == pytest.approx(norms, rel=1e-4)
    advice = {l.name: l.init for l in theirs.layers if l.init}
    for layer in ours.layers:
        if layer.init:
            assert (layer.init.fan_in, layer.init.fan_out, layer.init.activation_after) == (
                advice[layer.name].fan_in, advice[layer.name].fan_out, advice[layer.name].activation_after)
    assert [f.kind for f in ours.findings] == [f.kind for f in theirs.findings]


def test_onnx_random_inputs_fill_symbolic_dims_and_token_ranges(tmp_path, invoke):
    torch.manual_seed(0)
    model = TokenNet()
    tokens = torch.randint(0, 50, (2, 8))
    dims = {0: torch.export.Dim("batch"), 1: torch.export.Dim("seq")}
    path = _export(model, (tokens,), tmp_path / "tok.onnx", True, dynamic_shapes=(dims,))
    result = invoke("analyze", path, "--format", "json", "--verify")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["run"]["samples"] == 8
    names = [l["name"] for l in report["layers"]]
    assert names == ["embed", "fc", "relu", "head"]  # MatMul + bias Add read as one Linear
    assert all(l["observed"] for l in report["layers"])
    fc = report["layers"][1]
    assert fc["grad"]["bias_norm"] is not None and fc["init"]["fan_in"] == 16


def test_onnx_npz_inputs_by_name(tmp_path, invoke):
    torch.manual_seed(0)
    path = _export(Net(), (torch.randn(4, 12),), tmp_path / "net.onnx", False, input_names=["features"])
    data = tmp_path / "x.npz"
    np.savez(data, features=np.random.default_rng(0).standard_normal((10, 12)).astype(np.float32))
    result = invoke("analyze", path, "--input", data, "-F", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run"]["samples"] == 10


def test_unsupported_onnx_op_exits_2_naming_op_and_node(tmp_path, invoke):
    node = helper.make_node("DFT", ["x"], ["y"], name="shifty")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 2])],
    )
    path = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    result = invoke("analyze", path)
    assert result.exit_code == 2, result.output
    assert "DFT" in result.stderr and "shifty" in result.stderr
    assert "Traceback" not in result.output


def test_truncated_onnx_exits_2(tmp_path, invoke):
    path = _export(Net(), (torch.randn(2, 12),), tmp_path / "net.onnx", False)
    data = path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    result = invoke("analyze", cut, "-s", "2,12")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("gradcheck: error:")


def test_verify_declines_graphs_that_sample_random_numbers(tmp_path):
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 2)).train()
    path = _export(model, (torch.randn(4, 8),), tmp_path / "drop.onnx", False,
                   training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    report = analyze(str(path), torch.randn(4, 8), verify=True)
    assert any(n.startswith("not verifiable") and "Dropout" in n for n in report.notes), report.notes


def test_data_that_does_not_fit_the_graph_inputs_is_exit_2_listing_them(invoke, tmp_path):
    import warnings

    import numpy as np

    path = tmp_path / "lin.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.Sequential(torch.nn.Linear(4, 2)), (torch.randn(3, 4),), str(path),
                          input_names=["features"], dynamo=False)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((3, 4), dtype="float32"))
    for extra in ((), ("--verify",)):
        result = invoke("analyze", path, "-i", wrong, *extra)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert "unknown input name(s) 'x'" in result.stderr and "the graph takes features [3, 4] float32" in result.stderr


def test_a_loaded_onnx_model_is_planned_once_and_reports_alike(tmp_path, monkeypatch):
    """The interpreter's graph is fixed once loaded, so its plan (every node's metadata parsed) is made on
    the first analysis only; later analyses of the same loaded model give the same rows."""
    from gradcheck_cli.loading import load_model
    from gradcheck_cli.measure.instrument import onnx_nodes

    torch.manual_seed(0)
    x = torch.randn(16, 12)
    loaded = load_model(str(_export(Net(), (x,), tmp_path / "net.onnx", dynamo=False)))
    planned = []
    real = onnx_nodes._plan
    monkeypatch.setattr(onnx_nodes, "_plan", lambda module: (planned.append(module), real(module))[1])
    first, second = analyze(loaded, x), analyze(loaded, x)
    assert planned == [loaded.module]
    assert second.to_json() == first.to_json()
    other = load_model(str(tmp_path / "net.onnx"))  # another load: its own plan
    analyze(other, x)
    assert planned == [loaded.module, other.module]
