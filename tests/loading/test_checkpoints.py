"""Weights files as users have them: Lightning/DDP prefixes, and factories named as modules."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

FACTORY = '''
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
'''


def _project(tmp_path: Path) -> Path:
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(FACTORY)
    return package / "nets.py"


def _state(prefix: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    return {prefix + key: value for key, value in net.state_dict().items()}


def test_a_lightning_checkpoint_prefix_is_stripped_and_noted(invoke, tmp_path: Path) -> None:
    nets = _project(tmp_path)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"epoch": 3, "state_dict": _state("model."), "optimizer_states": []}, ckpt)
    result = invoke("analyze", ckpt, "--factory", f"{nets}:build", "-s", "16,8", "-F", "json", "--fail-on", "none")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert any("prefix 'model.'" in note for note in report["notes"])
    torch.manual_seed(1)
    expected = _state("")["0.weight"].norm().item()
    assert next(p for p in report["parameters"] if p["name"] == "0.weight")["weight_norm"] == pytest.approx(expected, rel=1e-5)


def test_keys_that_do_not_match_name_both_prefixes(invoke, tmp_path: Path) -> None:
    nets = _project(tmp_path)
    path = tmp_path / "weights.pt"
    torch.save({"encoder." + k: v for k, v in _state("backbone.").items()}, path)
    result = invoke("analyze", path, "--factory", f"{nets}:build", "-s", "16,8")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "the file's keys start with encoder." in result.stderr and "the model's with 0., 2." in result.stderr


def test_a_factory_named_as_a_module_imports_from_the_current_folder(invoke, tmp_path: Path, monkeypatch) -> None:
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = invoke("analyze", "mypkg.nets:build", "-s", "16,8", "-q", "--fail-on", "none")
    assert result.exit_code == 0, result.output
    assert str(tmp_path) not in [os.path.abspath(p) for p in sys.path]  # not left behind


def test_factory_arguments(invoke, tmp_path: Path) -> None:
    (tmp_path / "deep.py").write_text(
        "from torch import nn\n"
        "def build(depth=2, width=8, act='relu'):\n"
        "    layers = []\n"
        "    for _ in range(depth):\n"
        "        layers += [nn.Linear(width, width), nn.ReLU() if act == 'relu' else nn.Tanh()]\n"
        "    return nn.Sequential(*layers)\n")
    factory = f"{tmp_path / 'deep.py'}:build"
    result = invoke("analyze", factory, "--factory-arg", "depth=5", "--factory-arg", "act=tanh", "-s", "4,8", "-F", "json",
                    "--fail-on", "none")
    report = json.loads(result.stdout)
    kinds = [l["kind"] for l in report["layers"]]
    assert kinds.count("linear") == 5 and kinds.count("tanh") == 5
    bad = invoke("analyze", factory, "--factory-arg", "depht=5", "-s", "4,8")
    assert bad.exit_code == 2 and "does not take these arguments" in bad.stderr and "depht" in bad.stderr
    malformed = invoke("analyze", factory, "--factory-arg", "5", "-s", "4,8")
    assert malformed.exit_code == 2 and "malformed --factory-arg" in malformed.stderr
