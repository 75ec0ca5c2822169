"""Rich rendering stays readable in narrow consoles and lists everything in wide ones."""

from __future__ import annotations

import io

import pytest
import torch
from rich.console import Console

from gradcheck_cli import analyze
from gradcheck_cli.render.table import render_rich


@pytest.fixture(scope="module")
def report():
    from models import deep_sigmoid_mlp

    return analyze(deep_sigmoid_mlp(depth=6), torch.randn(128, 64))


def _text(report, width: int) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(render_rich(report, width=width))
    return buffer.getvalue()


@pytest.mark.parametrize("width", [80, 100, 160])
def test_every_layer_name_and_finding_is_visible(report, width):
    text = _text(report, width)
    assert max(len(line) for line in text.splitlines()) <= width
    rows = [line.split() for line in text.splitlines()]
    for layer in report.layers:
        assert any(layer.name in row for row in rows), (width, layer.name)
    for finding in report.findings:
        assert finding.kind in text
    assert report.summary.verdict.split(" -- ")[0] in text


def test_wide_console_gets_every_column_and_the_init_call(report):
    text = _text(report, 160)
    for column in ("act mean", "|m|/s", "sat", "|dW|/|W|", "nn.init.xavier_normal_"):
        assert column in text
    compact = _text(report, 80)
    assert "act mean" not in compact and "nn.init" not in compact
