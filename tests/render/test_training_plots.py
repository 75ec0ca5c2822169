"""Training figures: valid PNG/SVG for runs that diverge into NaN/Inf, saved or not, and the
divergence step marked on the heat map."""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET

import pytest
import torch
from torch import nn

from gradcheck_cli import TrainOptions, analyze
from gradcheck_cli.render import plots
from gradcheck_cli.report.model import Report

pytest.importorskip("matplotlib")

SVG = "{http://www.w3.org/2000/svg}svg"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def diverged() -> Report:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    g = torch.Generator().manual_seed(0)
    return analyze(model, torch.randn(32, 8, generator=g), target=torch.randn(32, 1, generator=g),
                   training=TrainOptions(steps=30, optimizer="sgd", lr=3.0))


def test_the_run_holds_nonfinite_values(diverged):
    t = diverged.training
    assert not all(math.isfinite(v) for v in t.loss) and not all(math.isfinite(v) for v in t.grad_norm)


@pytest.mark.parametrize("saved", [False, True], ids=["in-memory", "saved"])
def test_plot_files_are_valid_for_a_diverged_run(diverged, saved):
    report = Report.from_dict(json.loads(diverged.to_json())) if saved else diverged
    png = plots.render_plot(report, "png")
    assert png.startswith(PNG_MAGIC) and len(png) > 20_000
    svg = plots.render_plot(report, "svg").decode()
    root = ET.fromstring(svg)
    assert root.tag == SVG
    text = "".join(root.itertext())
    assert "Gradient flow" in text and "Training: loss and global gradient norm" in text
    assert "backward signal RMS per layer and step" in text and "dead units per rectifier layer" in text


def test_heat_map_marks_the_divergence_step(diverged):
    figures = dict(plots.svg_figures(diverged))
    assert len(figures) == 6
    heat = figures["Training: backward signal per layer and step"]
    for f in diverged.findings:
        if f.kind in ("diverging_loss", "exploding_gradient"):
            assert f"{f.kind} at step {f.step}" in heat
            assert f'id="training-heat-map-step-{f.kind}"' in heat
    assert 'id="training-heat-map-nonfinite-cells"' in heat
    loss = figures["Training: loss and gradient norm"]
    assert 'id="training-loss-nonfinite-loss"' in loss


def test_all_nonfinite_or_empty_series_say_nothing_to_plot(diverged):
    t = diverged.training
    broken = dataclasses.replace(
        t, loss=[math.nan] * len(t.loss), grad_norm=[math.inf] * len(t.grad_norm),
        layers=[dataclasses.replace(l, grad_rms=[None if i % 2 else math.nan for i in range(len(l.grad_rms))],
                                    dead=[math.nan] * len(l.dead)) for l in t.layers])
    report = dataclasses.replace(diverged, training=broken)
    figures = dict(plots.svg_figures(report))
    assert "nothing to plot" in figures["Training: loss and gradient norm"]
    assert "nothing to plot" in figures["Training: backward signal per layer and step"]
    assert "nothing to plot" in figures["Training: dead units over steps"]
    assert plots.render_plot(report, "png").startswith(PNG_MAGIC)


def test_one_logged_step_and_a_negative_loss_still_plot(diverged):
    t = diverged.training
    one = dataclasses.replace(t, loss=[-0.5], logged_steps=[0], grad_norm=[t.grad_norm[0]], completed=1,
                              layers=[dataclasses.replace(l, grad_rms=l.grad_rms[:1], dead=l.dead[:1],
                                                          nonfinite=l.nonfinite[:1]) for l in t.layers])
    report = dataclasses.replace(diverged, training=one, findings=[])
    assert ET.fromstring(plots.render_plot(report, "svg")).tag == SVG


def test_training_plots_are_deterministic(diverged):
    assert plots.render_plot(diverged, "svg") == plots.render_plot(diverged, "svg")
