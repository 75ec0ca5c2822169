"""What goes wrong when loading and feeding real files says what is missing, as one line with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn


def test_a_pt2_called_with_other_shapes_names_both(invoke, tmp_path: Path) -> None:
    path = tmp_path / "mlp.pt2"
    torch.export.save(torch.export.export(nn.Sequential(nn.Linear(8, 4)), (torch.randn(4, 8),)), path)
    result = invoke("analyze", path, "-s", "6,8")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "exported with (4, 8), given (6, 8)" in result.stderr and "dynamic_shapes" in result.stderr


def test_a_missing_forward_argument_says_how_to_give_several_inputs(invoke, tmp_path: Path) -> None:
    (tmp_path / "two.py").write_text(
        "from torch import nn\n"
        "class Two(nn.Module):\n"
        "    def __init__(self):\n        super().__init__(); self.a = nn.Linear(4, 4); self.b = nn.Linear(4, 4)\n"
        "    def forward(self, x, y):\n        return self.a(x) + self.b(y)\n"
        "def build():\n    return Two()\n")
    result = invoke("analyze", f"{tmp_path / 'two.py'}:build", "-s", "2,4")
    assert result.exit_code == 2 and "missing 1 required positional argument: 'y'" in result.stderr
    assert "repeat --input-shape once per positional input" in result.stderr
    assert invoke("analyze", f"{tmp_path / 'two.py'}:build", "-s", "2,4", "-s", "2,4", "-q", "--fail-on", "none").exit_code == 0


@pytest.mark.slow
def test_a_pt2_whose_outputs_need_a_library_says_which_and_import_loads_it(tmp_path: Path) -> None:
    """Run in fresh interpreters: this test process has transformers' output classes registered already."""
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=16, use_cache=False,
                                     bos_token_id=1, eos_token_id=2)
    path = tmp_path / "gpt2.pt2"
    torch.export.save(torch.export.export(transformers.GPT2LMHeadModel(config), (torch.randint(0, 50, (2, 8)),)), path)
    command = [sys.executable, "-m", "gradcheck_cli", "analyze", str(path), "-q", "--fail-on", "none"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    line = refused.stderr.strip().splitlines()[-1]
    assert "CausalLMOutputWithCrossAttentions is not registered" in line and "--import transformers.modeling_outputs" in line
    loaded = subprocess.run([*command, "--import", "transformers.modeling_outputs"], capture_output=True, text=True,
                            timeout=300)
    assert loaded.returncode == 0, loaded.stderr
