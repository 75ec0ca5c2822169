"""Figures (gradcheck_cli.render.plots): real files, deterministic bytes, escaped model strings,
bad layers marked, and no exception on reports with nothing to plot."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.render import plots
from gradcheck_cli.report.model import GradStats, Report

pytest.importorskip("matplotlib")

SVG = "{http://www.w3.org/2000/svg}svg"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HOSTILE = "<script>alert(1)</script>"
LOOKS_LIKE_ID = 'q id="p" href="#p" url(#p)'


@pytest.fixture(scope="module")
def sigmoid_report() -> Report:
    """A 12-layer sigmoid MLP: a vanishing gradient (error) with a first bad layer."""
    from models import deep_sigmoid_mlp

    torch.manual_seed(0)
    return analyze(deep_sigmoid_mlp(), torch.randn(128, 64))


@pytest.fixture(scope="module")
def hostile_report() -> Report:
    model = nn.Sequential()
    model.add_module(HOSTILE, nn.Linear(4, 4))
    model.add_module("a$x^2$ & b", nn.Sigmoid())
    model.add_module(LOOKS_LIKE_ID, nn.Tanh())
    model.add_module("out", nn.Linear(4, 2))
    torch.manual_seed(0)
    return analyze(model, torch.randn(16, 4))


def _figures(report: Report) -> dict[str, str]:
    return dict(plots.svg_figures(report))


def test_png_and_svg_are_files_of_their_kind(sigmoid_report):
    png = plots.render_plot(sigmoid_report, "png")
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    svg = plots.render_plot(sigmoid_report, "svg")
    assert ET.fromstring(svg).tag == SVG  # well-formed XML with an <svg> root
    with pytest.raises(ValueError, match="svg, png"):
        plots.render_plot(sigmoid_report, "pdf")


def test_output_is_byte_identical_for_the_same_report(sigmoid_report):
    # SVG ids are salted hashes (random without svg.hashsalt) and both formats would carry a date
    # or version; the same report must give the same bytes.
    assert plots.render_plot(sigmoid_report, "svg") == plots.render_plot(sigmoid_report, "svg")
    assert plots.render_plot(sigmoid_report, "png") == plots.render_plot(sigmoid_report, "png")
    assert plots.svg_figures(sigmoid_report) == plots.svg_figures(sigmoid_report)
    svg = plots.render_plot(sigmoid_report, "svg").decode()
    assert "<dc:date>" not in svg and "Matplotlib v" not in svg


def test_output_is_byte_identical_in_another_process(sigmoid_report, tmp_path):
    # Another process has another hash seed and a fresh matplotlib: nothing may depend on either.
    saved = tmp_path / "report.json"
    saved.write_text(sigmoid_report.to_json())
    report = Report.from_dict(json.loads(saved.read_text()))
    code = ("import json, sys; from gradcheck_cli.report.model import Report; from gradcheck_cli.render import plots; "
            "r = Report.from_dict(json.load(open(sys.argv[1]))); "
            "sys.stdout.buffer.write(plots.render_plot(r, 'svg') + b'@@' + plots.render_plot(r, 'png'))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code, str(saved)], capture_output=True, env=env, timeout=120, check=True)
    assert other.stdout == plots.render_plot(report, "svg") + b"@@" + plots.render_plot(report, "png")


def test_layer_names_from_the_model_are_escaped_text(hostile_report):
    svg = plots.render_plot(hostile_report, "svg").decode()
    root = ET.fromstring(svg)
    assert not [el for el in root.iter() if el.tag.endswith("script")]
    assert "<script" not in svg and "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    texts = ["".join(el.itertext()) for el in root.iter("{http://www.w3.org/2000/svg}text")]
    assert HOSTILE in texts  # drawn as text (svg.fonttype none), exactly
    assert "a$x^2$ & b" in texts  # parse_math off: a '$' in a name is not mathtext
    for _, inline in plots.svg_figures(hostile_report):
        assert "<script" not in inline and "http" not in inline
        assert LOOKS_LIKE_ID in inline  # the id prefixing touches tags only, never a name's text


def test_label_cleans_untrusted_names():
    assert plots.label("a\x00b\u202ec") == "a?b?c"  # invalid in XML; a bidi override
    long = "encoder." * 10 + "out_proj"
    assert plots.label(long).startswith("…") and plots.label(long).endswith("out_proj")
    assert len(plots.label(long)) == 32


def test_bad_layers_are_marked_and_the_first_annotated(sigmoid_report):
    first = sigmoid_report.summary.first_bad_layer
    assert first is not None
    svg = plots.render_plot(sigmoid_report, "svg").decode()
    assert 'id="bad-layers"' in svg and 'id="first-bad-layer"' in svg
    assert f"first bad layer: {first}" in svg


def test_a_healthy_model_has_no_marks():
    from models import he_relu_mlp

    torch.manual_seed(0)
    report = analyze(he_relu_mlp(depth=6, width=64), torch.randn(64, 64))
    assert report.summary.first_bad_layer is None
    svg = plots.render_plot(report, "svg").decode()
    assert 'id="bad-layers"' not in svg and "first bad layer" not in svg


def test_dead_and_saturation_figure_draws_the_thresholds():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 2))
    report = analyze(model, torch.randn(32, 8))
    svg = _figures(report)["Dead units and saturation"]
    assert 'id="dead-saturation-threshold-dead_ratio"' in svg
    assert 'id="dead-saturation-threshold-saturation"' in svg
    assert "dead threshold (50%)" in svg and "saturation threshold (20%)" in svg


def test_inline_figures_have_unique_ids_and_no_prolog(sigmoid_report):
    figures = plots.svg_figures(sigmoid_report)
    assert [title for title, _ in figures] == ["Gradient flow", "Forward signal", "Dead units and saturation"]
    ids: list[str] = []
    for _, svg in figures:
        assert svg.startswith('<svg class="gc-plot"') and "<?xml" not in svg and "DOCTYPE" not in svg
        ids += [el.get("id") for el in ET.fromstring(svg.replace("xlink:href", "href")).iter() if el.get("id")]
    assert len(ids) == len(set(ids))  # three figures on one page share no id


def _with_grads(report: Report, grad: GradStats) -> Report:
    return dataclasses.replace(report, layers=[dataclasses.replace(l, grad=grad, activation=None) for l in report.layers])


def test_reports_with_nothing_to_plot_give_a_message_not_an_exception(sigmoid_report):
    empty = dataclasses.replace(sigmoid_report, layers=[], findings=[])
    for _, svg in plots.svg_figures(empty):
        assert "nothing to plot: the report has no layers" in svg
    assert plots.render_plot(empty, "png").startswith(PNG_MAGIC)
    none = _with_grads(sigmoid_report, GradStats(None, False, None, None, None, None))
    figures = _figures(none)
    assert "nothing to plot: no finite, non-zero gradient" in figures["Gradient flow"]
    assert "nothing to plot: no finite, non-zero activation" in figures["Forward signal"]
    assert "Dead units and saturation" not in figures  # no rectifier or sigmoid/tanh data: no empty panel (issue 18)
    nan = _with_grads(sigmoid_report, GradStats(float("nan"), True, float("inf"), None, None, None))
    assert "nothing to plot" in plots.render_plot(nan, "svg").decode()


def test_nonfinite_and_zero_values_are_skipped_and_said(sigmoid_report):
    layers = list(sigmoid_report.layers)
    layers[3] = dataclasses.replace(layers[3], grad=dataclasses.replace(layers[3].grad, output_rms=float("nan"), nonfinite=True))
    layers[4] = dataclasses.replace(layers[4], grad=dataclasses.replace(layers[4].grad, weight_norm=0.0))
    svg = plots.render_plot(dataclasses.replace(sigmoid_report, layers=layers), "svg").decode()
    assert ET.fromstring(svg).tag == SVG
    assert 'id="nonfinite-layers"' in svg  # a red x on the top edge: NaN has no place on a log axis
    assert "not shown (0, NaN or Inf): 2 value(s) at layer(s) 3, 4" in svg


def test_plots_available_follows_the_import(monkeypatch):
    assert plots.plots_available()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert not plots.plots_available()
