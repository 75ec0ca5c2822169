"""Issue 18, items 3-6: reports of big models (repeated blocks folded, --depth/--only-findings/--max-rows, one plot
line per role), display names of numbered layers, |dW|/|W| relative to the median layer, init advice marked info.

The 16-block model is built from ``nn`` modules (blocks ``h.0`` .. ``h.15``: LayerNorm, Linear, GELU, Linear on a
residual stream), seeded, so its golden renderings are fast and deterministic. Regenerate them on purpose with
``GRADCHECK_UPDATE_GOLDEN=1 pytest tests/render/test_big_models.py`` and review the diff.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.layers import display_name
from gradcheck_cli.render.formats import FORMATS
from gradcheck_cli.render.grouping import Elided, LayerGroup, View, layout, limit
from gradcheck_cli.report.model import Report
from test_golden_renderings import ROOT, UPDATE, _plain


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 4 * width)
        self.act = nn.GELU()
        self.proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(self.act(self.fc(self.ln(x))))


class Blocks(nn.Module):
    """A GPT-2-like stack: an input projection, 16 residual blocks ``h.0`` .. ``h.15``, a final norm and a head."""

    def __init__(self, blocks: int = 16, width: int = 8) -> None:
        super().__init__()
        self.embed = nn.Linear(4, width)
        self.h = nn.ModuleList(Block(width) for _ in range(blocks))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.h:
            x = block(x)
        return self.head(self.ln_f(x))


@pytest.fixture(scope="module")
def blocks_report() -> Report:
    torch.manual_seed(0)
    model = Blocks()
    return analyze(model, torch.randn(32, 4, generator=torch.Generator().manual_seed(1)))


@pytest.fixture(scope="module")
def sequential_report() -> Report:
    """nn.Sequential names its layers 0, 1, 2: names that read as numbers."""
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(8, 8), nn.Sigmoid())], nn.Linear(8, 2))
    return analyze(model, torch.randn(64, 8, generator=torch.Generator().manual_seed(1)))


def _golden(name: str, text: str) -> None:
    golden = ROOT / "renderings" / name
    if UPDATE:
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden.name}: run with GRADCHECK_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{golden.name} changed: review, then regenerate with GRADCHECK_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("width", [160, 80])
def test_grouped_table_of_16_blocks_matches_golden(blocks_report: Report, width: int) -> None:
    text = _plain(FORMATS["table"].report(blocks_report, width, None), width)
    _golden(f"blocks16.table-{width}.txt", text)
    assert max(len(line) for line in text.splitlines()) <= width
    assert "h.* " in text and "h.* (16 blocks): grad rms per role" in text
    assert "h.3.fc" not in text  # one row per block, not per layer


def test_grouped_markdown_and_html_of_16_blocks_match_golden(blocks_report: Report,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from gradcheck_cli.render import plots

    monkeypatch.setattr(plots, "plots_available", lambda: False)
    _golden("blocks16.markdown.md", FORMATS["markdown"].report(blocks_report, None, None))
    page = FORMATS["html"].report(blocks_report, None, None)
    _golden("blocks16.html", page)
    for block in range(16):
        assert f'<tr id="block-h-{block}">' in page


def test_layout_folds_repeated_blocks_only_in_big_models(blocks_report: Report) -> None:
    rows = layout(blocks_report)
    assert rows.mode == "blocks"
    assert [r.name for r in rows.rows if isinstance(r, LayerGroup)] == ["h.*"]
    (table,) = rows.blocks
    assert [r.name for r in table.roles] == ["ln", "fc", "act", "proj"]
    assert len(table.rows) == 16
    small = Report.from_dict({**blocks_report.to_dict(), "layers": blocks_report.to_dict()["layers"][:30]})
    assert layout(small).mode == "layers"  # fewer than 40 rows: every layer
    assert layout(blocks_report, View(depth=0)).mode == "layers"


def test_depth_groups_module_names(blocks_report: Report) -> None:
    rows = layout(blocks_report, View(depth=2))
    names = [r.name for r in rows.rows if isinstance(r, LayerGroup)]
    assert names[:3] == ["embed", "h.0", "h.1"] and names[-2:] == ["ln_f", "head"]
    assert len(names) == 19
    text = _plain(FORMATS["table"].report(blocks_report, 160, View(depth=1)), 160)
    assert "h (64 layers)" in text or "│ h " in text


def test_max_rows_keeps_rows_with_findings_and_marks_gaps() -> None:
    rows = list(range(20))
    kept = limit(rows, 5, lambda r: r == 13)
    assert [r for r in kept if not isinstance(r, Elided)] == [0, 7, 13, 19] or 13 in kept
    assert sum(1 for r in kept if not isinstance(r, Elided)) == 5
    assert sum(r.count for r in kept if isinstance(r, Elided)) == 15
    assert limit(rows, 30, lambda r: False) == rows


def test_cli_depth_only_findings_and_max_rows(invoke, tmp_path, blocks_report: Report,
                                              sequential_report: Report) -> None:
    path = tmp_path / "blocks.json"
    path.write_text(blocks_report.to_json())
    every = invoke("render", path, "--depth", "0")
    assert every.exit_code == 0, every.output
    assert "h.15.proj" in every.stdout and "grad rms per role" not in every.stdout
    grouped = invoke("render", path, "--depth", "2", "--max-rows", "4")
    assert grouped.exit_code == 0, grouped.output
    assert "more" in grouped.stdout and "h.15.proj" not in grouped.stdout
    bad = tmp_path / "sequential.json"
    bad.write_text(sequential_report.to_json())
    assert sequential_report.findings
    only = invoke("render", bad, "--only-findings", "-F", "markdown")
    assert only.exit_code == 0, only.output
    named = {f.layer for f in sequential_report.findings}
    layer_rows = [line for line in only.stdout.split("<summary>Layers")[1].split("</details>")[0].splitlines()
                  if line.startswith("| ") and not line.startswith("| #")]
    assert len(layer_rows) == len(named)
    assert invoke("render", bad, "--max-rows", "0").exit_code == 2


def test_numbered_layers_show_their_type(sequential_report: Report) -> None:
    assert display_name("0", "Linear") == "0 (Linear)"
    assert display_name("3.1#2", "ReLU") == "3.1#2 (ReLU)"
    assert display_name("h.0", "Block") == "h.0"
    messages = " ".join(f.message for f in sequential_report.findings)
    assert "(Linear)" in messages or "(Sigmoid)" in messages
    text = _plain(FORMATS["table"].report(sequential_report, 160, None), 160)
    assert "0 (Linear)" in text and "12 (Linear)" in text
    for f in sequential_report.findings:
        assert f.layer.isdigit()  # the JSON keeps the plain name


def test_compact_table_keeps_the_columns_findings_are_about() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 2))
    report = analyze(model, torch.randn(64, 8, generator=torch.Generator().manual_seed(1)))
    assert any(f.kind == "not_zero_centred" for f in report.findings)
    text = _plain(FORMATS["table"].report(report, 80, None), 80)
    header = next(line for line in text.splitlines() if "layer" in line and "#" in line)
    assert "|m|/s" in header
    assert max(len(line) for line in text.splitlines()) <= 80


def test_relative_ratio_is_one_at_the_median_weight_layer(blocks_report: Report) -> None:
    import statistics

    weights = [l for l in blocks_report.layers if l.kind == "linear"]
    median = statistics.median(l.grad.weight_ratio for l in weights)
    for layer in weights:
        assert layer.grad.relative_ratio == pytest.approx(layer.grad.weight_ratio / median)
    assert "relative_ratio" in json.dumps(blocks_report.to_dict()["layers"][1]["grad"])


def test_init_advice_no_finding_backs_is_marked_info(blocks_report: Report, sequential_report: Report) -> None:
    # LayerNorm in every block and no init_mismatch: the textbook advice is information only
    advised = [l for l in blocks_report.layers if l.init is not None]
    assert advised and all(l.init.informational for l in advised)
    text = _plain(FORMATS["table"].report(blocks_report, 160, None), 160)
    assert "info: advice no finding backs" in text and " info " in text
    assert "| info |" in FORMATS["markdown"].report(blocks_report, None, None)
    assert 'class="info-advice"' in FORMATS["html"].report(blocks_report, None, None)
    # no normalisation layers: the advice stands
    assert all(not l.init.informational for l in sequential_report.layers if l.init is not None)
    assert "info: advice" not in _plain(FORMATS["table"].report(sequential_report, 160, None), 160)


def test_html_findings_link_to_their_rows(sequential_report: Report) -> None:
    page = FORMATS["html"].report(sequential_report, None, None)
    f = sequential_report.findings[0]
    index = next(l.index for l in sequential_report.layers if l.name == f.layer)
    assert f'<a href="#layer-{index}">' in page and f'<tr id="layer-{index}">' in page


def test_block_model_plots_one_line_per_role(blocks_report: Report) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from gradcheck_cli.render import plots

    figure = Figure()
    plots._gradient_flow(figure, blocks_report)
    (ax,) = figure.axes
    lines = [line for line in ax.get_lines() if (line.get_gid() or "").startswith("role-")]
    assert [line.get_label() for line in lines] == ["ln", "fc", "act", "proj"]
    assert all(len(line.get_xdata()) == 16 for line in lines)
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in range(16)]
    # no empty panel: nothing here is a rectifier or sigmoid/tanh
    assert [title for title, _ in plots.svg_figures(blocks_report)] == ["Gradient flow", "Forward signal"]


def test_float_noise_means_are_not_plotted(blocks_report: Report) -> None:
    from gradcheck_cli.render import plots

    norms = [l for l in blocks_report.layers if l.kind == "layernorm"]
    assert all(plots._ABS_MEAN(l) is None for l in norms if abs(l.activation.mean) < 1e-5 * l.activation.std)
