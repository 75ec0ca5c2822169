"""The training section (``analyze --steps``) in every format: real training runs of tiny ReLU MLPs,
one that diverges (SGD at lr 3) and one that stays healthy, rendered and checked for their numbers."""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
import torch
from rich.console import Console
from torch import nn

from gradcheck_cli import TrainOptions, analyze
from gradcheck_cli.render import training as tr
from gradcheck_cli.render.github import render_github
from gradcheck_cli.render.html import render_html
from gradcheck_cli.render.junit import render_junit
from gradcheck_cli.render.markdown import render_markdown
from gradcheck_cli.render.numbers import num
from gradcheck_cli.render.table import render_rich
from gradcheck_cli.report.model import Report


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))


def train(options: TrainOptions) -> Report:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 8, generator=g), torch.randn(32, 1, generator=g)
    return analyze(mlp(), x, target=y, training=options)


@pytest.fixture(scope="module")
def diverged() -> Report:
    return train(TrainOptions(steps=30, optimizer="sgd", lr=3.0))


@pytest.fixture(scope="module")
def healthy() -> Report:
    """120 steps, every one logged: the summary must elide."""
    return train(TrainOptions(steps=120, optimizer="sgd", lr=0.05, every=1))


def _text(report: Report, width: int = 200) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(render_rich(report, width=width))
    return buffer.getvalue()


def _rows(text: str, title: str) -> list[list[str]]:
    """Whitespace-split lines of the rich table titled ``title`` (up to the next blank line)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    out = []
    for line in lines[start + 1:]:
        if not line.strip() and out:
            break
        out.append(line.split())
    return out


def test_the_run_diverges_so_the_report_names_its_steps(diverged):
    t = diverged.training
    assert t is not None and t.completed < t.steps
    kinds = {f.kind: f.step for f in diverged.findings}
    assert {"diverging_loss", "exploding_gradient", "nonfinite"} <= set(kinds)
    assert all(kinds[k] is not None for k in ("diverging_loss", "exploding_gradient", "nonfinite"))


def test_table_shows_the_header_the_steps_and_the_divergence(diverged):
    t = diverged.training
    text = _text(diverged)
    assert f"{t.completed}/{t.steps} steps completed (stopped at a non-finite loss)" in text
    assert "sgd, lr 3 · weight decay 0 · no clipping" in text and t.data[:40] in text
    steps = {row[0]: row for row in _rows(text, "Training steps") if row and row[0].isdigit()}
    assert set(steps) == {str(s) for s in t.logged_steps}  # few steps: nothing elided
    diverging = next(f for f in diverged.findings if f.kind == "diverging_loss")
    assert "diverging_loss" in steps[str(diverging.step)]
    assert steps[str(diverging.step)][1] == num(t.loss[diverging.step])
    last = t.logged_steps[-1]
    assert not math.isfinite(t.loss[last]) and steps[str(last)][1] == num(t.loss[last])
    assert "(non-finite)" in " ".join(steps[str(last)])  # the worst layer at the last step is non-finite
    assert "elided" not in text


def test_findings_table_has_a_step_column_with_each_findings_step(diverged):
    rows = _rows(_text(diverged), "Findings")
    for f in (f for f in diverged.findings if f.step is not None):
        row = next(r for r in rows if f.kind in r)
        assert str(f.step) in row[row.index(f.kind) + 1:]


def test_worst_layer_is_the_largest_growth_over_step_0(diverged):
    t = diverged.training
    i = 2
    growth = {l.name: l.grad_rms[i] / l.grad_rms[0] for l in t.layers}
    name = max(growth, key=growth.get)
    assert tr.worst_layer(t.layers, i) == (f"{name} ({num(growth[name])}x)", False)
    assert tr.worst_layer(t.layers, 0)[0] == "- (reference step)"


def test_summary_elides_to_twenty_rows_keeping_first_last_and_finding_steps(healthy):
    t = healthy.training
    assert len(t.logged_steps) == 120
    summary = tr.step_summary(healthy)
    shown = [r.step for r in summary.rows]
    assert len(shown) == tr.SUMMARY_ROWS and shown[0] == 0 and shown[-1] == 119
    assert summary.elided == 100
    gaps = [b - a for a, b in zip(shown, shown[1:])]
    assert max(gaps) - min(gaps) <= 1  # evenly spaced
    text = _text(healthy)
    assert "20 of 120 logged steps shown, 100 elided" in text
    assert len([r for r in _rows(text, "Training steps") if r and r[0].isdigit()]) == 20
    assert num(t.loss[119]) in next(r for r in _rows(text, "Training steps") if r and r[0] == "119")


def test_steps_named_by_findings_are_kept_when_eliding():
    rows = tr.pick_rows(100, {37, 38})
    assert {0, 37, 38, 99} <= set(rows) and len(rows) == tr.SUMMARY_ROWS
    assert tr.pick_rows(5, set()) == [0, 1, 2, 3, 4]
    assert len(tr.pick_rows(100, set(range(0, 100, 3)))) == 34  # findings name more steps than fit: all kept


def test_per_layer_table_has_first_and_last_step_side_by_side(healthy):
    t = healthy.training
    table = tr.layer_table(t)
    assert table.headers[:4] == ["layer", "kind", "grad rms @0", "grad rms @119"]
    assert "dead @0" in table.headers and "dead @119" in table.headers and table.headers[-1] == "dying"
    first = t.layers[0]
    row = table.rows[0]
    assert [c.text for c in row[2:4]] == [num(first.grad_rms[0]), num(first.grad_rms[-1])]
    text = _text(healthy)
    assert "grad rms @119" in text and "Training advice" in text and "max_norm=" in text
    assert f"max_norm={num(t.advice.clip_grad_norm)}" in text


def test_lr_scan_and_lr_bound_are_listed():
    report = train(TrainOptions(steps=30, optimizer="sgd", lr=3.0, lr_scan=True))
    t = report.training
    assert t.lr_scan and t.advice.lr_bound is not None
    lines = dict(tr.advice_lines(t))
    assert lines["learning rate"].startswith(f"below {num(t.advice.lr_bound)}")
    for lr, stable in t.lr_scan.items():
        assert f"lr {lr} {'stable' if stable else 'diverged'}" in lines["lr scan"]
    assert "lr scan: lr " in _text(report, width=400)


def test_saved_report_renders_the_same_numbers(diverged):
    """A saved report keeps the NaN/Inf kinds inside a series (``<key>_nonfinite``): it renders as the live one."""
    loaded = Report.from_dict(json.loads(diverged.to_json()))
    last = loaded.training.logged_steps[-1]
    rows = [next(r for r in _rows(_text(report), "Training steps") if r and r[0] == str(last))
            for report in (diverged, loaded)]
    assert rows[0] == rows[1]
    assert not math.isfinite(loaded.training.loss[-1])


def test_markdown_has_the_training_section(diverged, healthy):
    md = render_markdown(diverged)
    t = diverged.training
    assert "#### Training" in md and f"{t.completed}/{t.steps} steps completed" in md
    diverging = next(f for f in diverged.findings if f.kind == "diverging_loss")
    assert f"| {diverging.step} | {num(t.loss[diverging.step])} |" in md
    assert "| step |" in md.split("#### Findings")[1].split("\n")[2]  # the findings table's step column
    long = render_markdown(healthy)
    assert "20 of 120 logged steps shown, 100 elided" in long and "grad rms @119" in long


class _Checker(HTMLParser):
    """Well-formedness: every non-void tag closed, in order."""

    VOID = {"meta", "br", "img", "hr", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _check(page: str) -> _Checker:
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert not checker.stack
    return checker


def test_html_has_the_training_section_and_is_well_formed(diverged, monkeypatch):
    from gradcheck_cli.render import plots

    monkeypatch.setattr(plots, "plots_available", lambda: False)
    page = render_html(diverged)
    parsed = _check(page)
    text = " ".join(parsed.text)
    t = diverged.training
    assert "Training" in text and f"{t.completed}/{t.steps} steps completed" in text
    assert parsed.tags.count("table") == 5  # findings, layers, init, training steps, training layers
    assert 'class="bad"' in page  # the non-finite last step is marked
    diverging = next(f for f in diverged.findings if f.kind == "diverging_loss")
    assert f"<td class=\"\">{diverging.step}</td><td class=\"\">{num(t.loss[diverging.step])}</td>" in page


def test_html_embeds_the_training_figures(diverged):
    pytest.importorskip("matplotlib")
    page = render_html(diverged)
    parsed = _check(page)
    assert parsed.tags.count("svg") == 6 and "script" not in parsed.tags and "http" not in page


def test_github_and_junit_name_the_step(diverged):
    from gradcheck_cli.render.grouping import names

    annotations = render_github(diverged)
    root = ET.fromstring(render_junit(diverged))
    for f in (f for f in diverged.findings if f.step is not None):
        shown = names(diverged).get(f.layer, f.layer)  # numbered layers carry their type: 0 (Linear)
        assert f"gradcheck {f.kind}%3A {shown} at step {f.step}::" in annotations
        assert f"{f.layer} at step {f.step}:" in "".join(root.itertext())


def test_one_shot_reports_render_no_training_section():
    torch.manual_seed(0)
    report = analyze(mlp(), torch.randn(16, 8))
    assert report.training is None
    text = _text(report)
    assert "Training" not in text and "step" not in _rows(text, "Layers (forward order)")[1]
    assert "#### Training" not in render_markdown(report) and "<h2>Training</h2>" not in render_html(report)
