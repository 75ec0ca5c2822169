"""Small real model files for the robustness tests, built in a temporary directory."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

FACTORY_SOURCE = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def raises():
    raise RuntimeError("factory exploded on purpose")


def not_a_model():
    return 42


def marked():
    from pathlib import Path

    (Path(__file__).parent / "factory-was-called").write_text("called")
    return build()


def no_parameters():
    return nn.Sequential(nn.ReLU(), nn.Tanh())


def frozen():
    model = build()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class _IntOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(x).argmax(-1)


def int_output():
    return _IntOut()


class _Boom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        self.fc(x)
        raise RuntimeError("model failed mid-forward on purpose")


def boom():
    return _Boom()


class _Interrupt(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        self.fc(x)
        raise KeyboardInterrupt


def interrupt():
    return _Interrupt()


class _Slow(nn.Module):
    calls = 0

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        type(self).calls += 1
        return self.fc(x)


def counted():
    return _Slow()
"""


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def write_factory(directory: Path) -> Path:
    path = directory / "factories.py"
    path.write_text(FACTORY_SOURCE)
    return path


def torchscript_bytes(model: nn.Module | None = None) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(model or build_model()), buffer)
    return buffer.getvalue()


def export_bytes(model: nn.Module | None = None) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(model or build_model(), (torch.randn(4, 8),)), buffer)
    return buffer.getvalue()


def state_dict_bytes(model: nn.Module | None = None) -> bytes:
    buffer = io.BytesIO()
    torch.save((model or build_model()).state_dict(), buffer)
    return buffer.getvalue()


def onnx_model(external: bool = False):
    """The same 8-16-3 ReLU MLP as an ONNX graph (MatMul + Add + Relu), symbolic batch."""
    from onnx import TensorProto, helper, numpy_helper

    model = build_model()
    w1, b1 = model[0].weight.detach().numpy().T.copy(), model[0].bias.detach().numpy()
    w2, b2 = model[2].weight.detach().numpy().T.copy(), model[2].bias.detach().numpy()
    inits = [numpy_helper.from_array(np.ascontiguousarray(a), n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="/fc1/MatMul"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="/fc1/Add"),
        helper.make_node("Relu", ["h1"], ["h2"], name="/relu/Relu"),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"], name="/fc2/MatMul"),
        helper.make_node("Add", ["h3", "b2"], ["y"], name="/fc2/Add"),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def onnx_bytes() -> bytes:
    return onnx_model().SerializeToString()


def save_onnx_external(directory: Path, location: str = "weights.bin") -> Path:
    """``directory/model.onnx`` with every initializer in an external file; ``location`` rewritten after."""
    import onnx
    from onnx import external_data_helper

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.onnx"
    onnx.save_model(onnx_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    if location != "weights.bin":
        proto = onnx.load(str(path), load_external_data=False)
        for tensor in external_data_helper._get_all_tensors(proto):
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save_model(proto, str(path))
    return path
