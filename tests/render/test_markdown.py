"""Markdown output: what a PR comment shows, with everything from the model escaped."""

from __future__ import annotations

import torch
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.render.markdown import escape, render_markdown

EVIL = "<script>alert(1)</script>|x*y_z"


def _evil_model() -> nn.Module:
    model = nn.Sequential()
    model.add_module(EVIL, nn.Linear(4, 4))
    model.add_module("act", nn.Sigmoid())
    model.add_module("out", nn.Linear(4, 2))
    return model


def test_layer_names_from_the_model_are_escaped():
    text = render_markdown(analyze(_evil_model(), torch.randn(16, 4)))
    assert "<script>" not in text and "</script>" not in text
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;\\|x\\*y\\_z" in text
    for line in text.splitlines():
        if line.startswith("| ") and "script" in line:
            assert line.count(" | ") == line.replace("\\|", "").count(" | ")  # no stray column breaks


def test_markdown_has_verdict_findings_layers_and_init(invoke):
    from conftest import EXAMPLES

    result = invoke("analyze", f"{EXAMPLES / 'models.py'}:deep_sigmoid_mlp", "-s", "128,64", "--format", "markdown")
    assert result.exit_code == 1, result.output
    text = result.stdout
    assert text.startswith("### ❌ gradcheck: FAIL")
    assert "#### Findings" in text and "`vanishing_gradient`" in text
    assert "<summary>Layers (forward order)</summary>" in text and "<summary>Init variance</summary>" in text
    assert "exit code 1" in text


def test_md_suffix_selects_markdown(invoke, tmp_path):
    from conftest import EXAMPLES

    out = tmp_path / "summary.md"
    result = invoke("analyze", f"{EXAMPLES / 'models.py'}:he_relu_mlp", "-s", "64,256", "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("### ✅ gradcheck: OK")


def test_escape_is_total():
    assert escape("a|b") == "a\\|b"
    assert escape("<b>&") == "&lt;b&gt;&amp;"
    assert escape("line\nbreak") == "line break"
