"""HTML output: one self-contained, script-free page with every model string escaped."""

from __future__ import annotations

from html.parser import HTMLParser

import torch
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.render.html import render_html

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    return parser


def test_model_strings_are_escaped_and_the_page_has_no_script():
    model = nn.Sequential()
    model.add_module(EVIL, nn.Linear(4, 4))
    model.add_module("act", nn.Sigmoid())
    model.add_module("out", nn.Linear(4, 2))
    page = render_html(analyze(model, torch.randn(16, 4)))
    parsed = _parse(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert not any(name.startswith("on") for name, _ in parsed.attrs)
    assert EVIL in "".join(parsed.text)  # shown as text, exactly
    assert "http" not in page  # self-contained: no external resource


def test_html_has_every_section(invoke, tmp_path):
    from conftest import EXAMPLES

    out = tmp_path / "report.html"
    result = invoke("analyze", f"{EXAMPLES / 'models.py'}:deep_sigmoid_mlp", "-s", "128,64", "-o", out)
    assert result.exit_code == 1, result.output  # a vanishing gradient is an error: the default gate
    parsed = _parse(out.read_text())
    text = " ".join(parsed.text)
    for heading in ("Findings", "Layers (forward order)", "Init variance", "vanishing_gradient"):
        assert heading in text
    assert parsed.tags.count("table") == 3


def _sigmoid_report():
    from models import deep_sigmoid_mlp

    torch.manual_seed(0)
    return analyze(deep_sigmoid_mlp(depth=6, width=32), torch.randn(64, 32))


def test_without_matplotlib_the_page_has_the_tables_and_says_how_to_get_plots(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    page = render_html(_sigmoid_report())
    parsed = _parse(page)
    text = " ".join(parsed.text)
    assert "plots need matplotlib: pip install 'gradcheck[plots]'" in text
    assert "svg" not in parsed.tags and parsed.tags.count("table") == 3
    assert "Layers (forward order)" in text and "vanishing_gradient" in text


def test_with_matplotlib_the_page_has_three_inline_figures_and_stays_self_contained():
    import pytest

    pytest.importorskip("matplotlib")
    page = render_html(_sigmoid_report())
    parsed = _parse(page)
    assert parsed.tags.count("svg") == 3 and parsed.tags.count("table") == 3
    assert "script" not in parsed.tags and "http" not in page and "<?xml" not in page
    assert not any(name.startswith("on") or name == "src" for name, _ in parsed.attrs)
    assert all((value or "").startswith("#") for name, value in parsed.attrs if name.endswith("href"))  # in-page only
    assert page.index("<h2>Plots</h2>") < page.index("<h2>Layers (forward order)</h2>")
    assert "plots need matplotlib" not in page
    ids = [value for name, value in parsed.attrs if name == "id"]
    assert len(ids) == len(set(ids))  # ids of the three figures do not collide
