"""Issue 15's loading refusals through the CLI: each is one exact line on stderr with its exit code.

One table: a case builds its files in a temporary folder and gives the arguments; the expected line is
written with ``{tmp}`` for that folder. A TorchScript model whose code lives in a ``models/`` package
was refused once; it is the table's success case.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

MLP = "import torch\nfrom torch import nn\n\ndef build():\n    torch.manual_seed(0)\n    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))\n"


def _torchscript_from_models_package(tmp: Path) -> list[str]:
    (tmp / "models").mkdir()
    (tmp / "models" / "__init__.py").write_text("")
    (tmp / "models" / "mlp.py").write_text(
        "from torch import nn\nclass Mlp(nn.Module):\n    def __init__(self):\n        super().__init__(); self.fc = nn.Linear(8, 4)\n"
        "    def forward(self, x):\n        return self.fc(x).relu()\n")
    # another ``models`` (the examples' models.py, on sys.path for other tests) must not shadow this one
    shadowed = {m: sys.modules.pop(m) for m in [m for m in sys.modules if m == "models" or m.startswith("models.")]}
    sys.path.insert(0, str(tmp))
    try:
        from models.mlp import Mlp  # type: ignore[import-not-found]

        torch.jit.save(torch.jit.trace(Mlp(), torch.randn(2, 8)), tmp / "mlp.ts")
    finally:
        sys.path.remove(str(tmp))
        for name in [m for m in sys.modules if m == "models" or m.startswith("models.")]:
            del sys.modules[name]
        sys.modules.update(shadowed)
    return [str(tmp / "mlp.ts"), "-s", "2,8", "-q", "--fail-on", "none"]


def _pt2_other_shape(tmp: Path) -> list[str]:
    torch.export.save(torch.export.export(nn.Sequential(nn.Linear(8, 4)), (torch.randn(4, 8),)), tmp / "mlp.pt2")
    return [str(tmp / "mlp.pt2"), "-s", "6,8"]


def _onnx(tmp: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(nn.Sequential(nn.Linear(8, 4)), (torch.randn(4, 8),), str(tmp / "m.onnx"),
                          input_names=["features"], dynamo=False)
    np.savez(tmp / "x.npz", x=np.zeros((4, 8), np.float32))
    return tmp / "m.onnx"


def _onnx_npz_wrong_keys(tmp: Path) -> list[str]:
    return [str(_onnx(tmp)), "-i", str(tmp / "x.npz")]


def _onnx_npz_wrong_keys_verified(tmp: Path) -> list[str]:
    return [*_onnx_npz_wrong_keys(tmp), "--verify"]


def _hf_remote_code(tmp: Path) -> list[str]:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=16)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp / "remote")
    data = json.loads((tmp / "remote" / "config.json").read_text())
    (tmp / "remote" / "config.json").write_text(json.dumps({**data, "auto_map": {"AutoModel": "evil.Model"}}))
    return [str(tmp / "remote")]


def _state_dict_prefixes(tmp: Path) -> list[str]:
    (tmp / "nets.py").write_text(MLP)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    torch.save({"state_dict": {"encoder.backbone." + k: v for k, v in net.state_dict().items()}}, tmp / "last.ckpt")
    return [str(tmp / "last.ckpt"), "--factory", f"{tmp / 'nets.py'}:build", "-s", "16,8"]


def _pickled_module(tmp: Path) -> list[str]:
    torch.save(nn.Sequential(nn.Linear(8, 4)), tmp / "whole.pt")
    return [str(tmp / "whole.pt"), "-s", "2,8"]


def _factory_without_its_arguments(tmp: Path) -> list[str]:
    (tmp / "deep.py").write_text("from torch import nn\ndef build(depth):\n    return nn.Sequential(*[nn.Linear(4, 4)] * depth)\n")
    return [f"{tmp / 'deep.py'}:build", "-s", "2,4"]


def _missing_forward_argument(tmp: Path) -> list[str]:
    (tmp / "two.py").write_text(
        "from torch import nn\nclass Two(nn.Module):\n    def __init__(self):\n        super().__init__(); self.a = nn.Linear(4, 4)\n"
        "    def forward(self, x, y):\n        return self.a(x) + y\ndef build():\n    return Two()\n")
    return [f"{tmp / 'two.py'}:build", "-s", "2,4"]


ONNX_INPUTS = "the graph takes features [4, 8] float32 (name the data's arrays after the graph inputs, or pass them positionally in that order)"
CASES: dict[str, tuple[Callable[[Path], list[str]], int, str | None]] = {
    "torchscript in a models/ package loads": (_torchscript_from_models_package, 0, None),
    "pt2 given other shapes": (
        _pt2_other_shape, 2,
        "gradcheck: error: the input does not fit the shapes the torch.export program was exported with (Guard failed: "
        "input.size()[0] == 4): exported with (4, 8), given (6, 8) (pass inputs of those shapes, or export with "
        "dynamic_shapes= to allow others)"),
    "onnx npz with other keys": (
        _onnx_npz_wrong_keys, 2,
        "gradcheck: error: the data does not fit the ONNX graph's inputs: unknown input name(s) 'x'; " + ONNX_INPUTS),
    "onnx npz with other keys, --verify": (
        _onnx_npz_wrong_keys_verified, 2,
        "gradcheck: error: the data does not fit the ONNX graph's inputs: unknown input name(s) 'x'; " + ONNX_INPUTS),
    "hf folder with remote code": (
        _hf_remote_code, 2,
        "gradcheck: error: {tmp}/remote ships its own modeling code (config.json has auto_map) (pass --trust-remote-code "
        "only if you trust whoever made it)"),
    "pickled module refused": (
        _pickled_module, 2,
        "gradcheck: error: {tmp}/whole.pt holds a pickled Python object (a full nn.Module), and unpickling runs arbitrary "
        "code from the file (pass --trust-pickle only if you trust whoever made it, or save it as a state_dict, "
        "TorchScript or torch.export file instead)"),
    "checkpoint keys that do not fit show both prefixes": (
        _state_dict_prefixes, 2,
        "gradcheck: error: state_dict {tmp}/last.ckpt does not fit the factory's model; missing keys: 0.weight, 0.bias, "
        "2.weight, 2.bias; unexpected keys: encoder.backbone.0.weight, encoder.backbone.0.bias, "
        "encoder.backbone.2.weight, encoder.backbone.2.bias; the file's keys start with encoder., the model's with 0., "
        "2. (check that --factory builds the same architecture)"),
    "factory called without its arguments": (
        _factory_without_its_arguments, 2,
        "gradcheck: error: factory '{tmp}/deep.py:build' raised TypeError: build() missing 1 required positional "
        "argument: 'depth'"),
    "forward missing an argument": (
        _missing_forward_argument, 2,
        "gradcheck: error: the inputs do not match the model's forward arguments: Two.forward() missing 1 required "
        "positional argument: 'y' (repeat --input-shape once per positional input, or pass a .pt dict of keyword "
        "tensors named as forward's arguments)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_refusal_is_one_exact_line_with_its_exit_code(invoke, tmp_path: Path, case: str) -> None:
    make, code, line = CASES[case]
    result = invoke("analyze", *make(tmp_path))
    assert result.exit_code == code, result.output
    if line is None:
        return
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.rstrip("\n") == line.format(tmp=tmp_path)


@pytest.mark.slow
def test_a_pt2_whose_output_type_is_not_registered_is_one_exact_line(tmp_path: Path) -> None:
    """A fresh interpreter, which has not imported the module that registers the output type."""
    (tmp_path / "outtypes.py").write_text(
        "import torch.utils._pytree as pytree\nclass Out:\n    def __init__(self, y):\n        self.y = y\n"
        "pytree.register_pytree_node(Out, lambda o: ([o.y], None), lambda ys, _: Out(ys[0]),\n"
        "                            serialized_type_name='outtypes.Out')\n")
    script = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); from outtypes import Out\n"
        "class M(torch.nn.Module):\n    def __init__(self):\n        super().__init__(); self.fc = torch.nn.Linear(4, 2)\n"
        "    def forward(self, x):\n        return Out(self.fc(x))\n"
        "torch.export.save(torch.export.export(M(), (torch.randn(2, 4),)), sys.argv[1] + '/out.pt2')\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, capture_output=True, timeout=300)
    refused = subprocess.run([sys.executable, "-m", "gradcheck_cli", "analyze", str(tmp_path / "out.pt2")],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path.parent)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"gradcheck: error: cannot load torch.export program {tmp_path / 'out.pt2'}: its input/output type outtypes.Out "
        "is not registered with torch's pytree (import its module first: --import outtypes)")
