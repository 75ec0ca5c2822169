"""``compare`` on training reports: the runs side by side, findings keyed by kind and layer (not step)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from gradcheck_cli import TrainOptions, analyze
from gradcheck_cli.render.comparison import render_comparison_markdown, render_comparison_rich
from gradcheck_cli.render.numbers import num
from gradcheck_cli.report.compare import compare
from gradcheck_cli.report.model import Report
from gradcheck_cli.report.schema import comparison_schema


def train(lr: float, steps: int = 30) -> Report:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    g = torch.Generator().manual_seed(0)
    report = analyze(model, torch.randn(32, 8, generator=g), target=torch.randn(32, 1, generator=g),
                     training=TrainOptions(steps=steps, optimizer="sgd", lr=lr))
    return Report.from_dict(json.loads(report.to_json()))  # as compare reads them: saved files


@pytest.fixture(scope="module")
def healthy() -> Report:
    return train(0.05)


@pytest.fixture(scope="module")
def diverged() -> Report:
    return train(3.0)


def test_diverging_run_regresses_and_shows_the_training_deltas(healthy, diverged):
    c = compare(healthy, diverged)
    assert c.status == "regressed" and c.exit_code == 1
    assert c.training is not None
    old, new = c.training.baseline, c.training.current
    assert (old.completed, new.completed) == (30, diverged.training.completed) and new.completed < 30
    assert old.final_loss == pytest.approx(healthy.training.loss[-1])
    assert new.final_loss is None and new.max_grad_norm == math.inf
    assert old.max_grad_norm == pytest.approx(max(healthy.training.grad_norm))
    assert "training setting lr differs: baseline 0.05, current 3.0" in c.notes
    new_kinds = {(f.kind, f.step) for f in c.findings if f.change == "new"}
    diverging = next(f for f in diverged.findings if f.kind == "diverging_loss")
    assert ("diverging_loss", diverging.step) in new_kinds
    md = render_comparison_markdown(c)
    assert f"| steps completed | 30/30 | {new.completed}/30 |  |" in md
    assert f"| final loss | {num(old.final_loss)} | non-finite |  |" in md
    assert f"(loss\\) at step {diverging.step}" in md


def test_same_training_run_is_unchanged_with_ratio_one(healthy):
    c = compare(healthy, healthy)
    assert c.status == "unchanged" and c.training.loss_change == pytest.approx(1.0)
    assert c.training.grad_norm_change == pytest.approx(1.0)


def test_a_finding_whose_step_moved_is_the_same_finding(diverged):
    moved = dataclasses.replace(diverged, findings=[dataclasses.replace(f, step=(f.step or 0) + 3) for f in diverged.findings])
    c = compare(diverged, moved)
    assert c.findings == [] and c.status == "unchanged"


def test_training_on_one_side_only_is_noted_not_compared(healthy):
    one_shot = dataclasses.replace(healthy, training=None)
    c = compare(one_shot, healthy)
    assert c.training is None
    assert any("only the current report has a training run" in n for n in c.notes)
    assert compare(one_shot, one_shot).notes == []


def test_comparison_with_training_validates_against_the_derived_schema(healthy, diverged):
    jsonschema = pytest.importorskip("jsonschema")
    c = compare(healthy, diverged)
    jsonschema.validate(json.loads(c.to_json()), comparison_schema())
    legacy = json.loads(compare(dataclasses.replace(healthy, training=None), healthy).to_json())
    legacy.pop("training")
    for f in legacy["findings"]:
        f.pop("step", None)
    jsonschema.validate(legacy, comparison_schema())  # files written before the training fields still validate


def test_rich_comparison_has_the_training_table(healthy, diverged):
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(render_comparison_rich(compare(healthy, diverged)))
    text = buffer.getvalue()
    assert "max global grad norm" in text and "inf" in text and "non-finite" in text
