"""Hugging Face model folders (save_pretrained), single-file and sharded, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")


def _gpt2(folder: Path, **save: object) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=32)
    model = transformers.GPT2LMHeadModel(config)
    model.save_pretrained(folder, **save)
    return model


def _report(result) -> dict:  # noqa: ANN001
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("save", [{}, {"max_shard_size": "100KB"}], ids=["single", "sharded"])
def test_a_folder_builds_from_its_config_and_weights(invoke, tmp_path: Path, save: dict) -> None:
    folder = tmp_path / "my-model"
    model = _gpt2(folder, **save)
    if save:
        assert (folder / "model.safetensors.index.json").is_file()
    report = _report(invoke("analyze", folder, "-F", "json", "--fail-on", "none"))
    assert report["model"]["format"] == "hf_folder" and report["run"]["samples"] == 2  # token ids made for it
    norms = {p["name"]: p["weight_norm"] for p in report["parameters"]}
    assert norms["transformer.h.0.attn.c_attn.weight"] == pytest.approx(
        model.transformer.h[0].attn.c_attn.weight.norm().item(), rel=1e-5)
    given = _report(invoke("analyze", folder, "-s", "3,8", "--input-range", "0,100", "-F", "json", "--fail-on", "none"))
    assert given["run"]["samples"] == 3


def test_a_safetensors_file_with_its_config_beside_it(invoke, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    _gpt2(folder)
    report = _report(invoke("analyze", folder / "model.safetensors", "-F", "json", "--fail-on", "none"))
    assert report["model"]["format"] == "hf_folder"


def test_remote_code_is_refused_without_the_flag(invoke, tmp_path: Path) -> None:
    folder = tmp_path / "remote"
    _gpt2(folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    result = invoke("analyze", folder)
    assert result.exit_code == 2 and "ships its own modeling code" in result.stderr and "--trust-remote-code" in result.stderr


def test_a_config_without_weights_says_so(invoke, tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    result = invoke("analyze", folder)
    assert result.exit_code == 2 and "no weights" in result.stderr and result.stderr.count("\n") == 1
