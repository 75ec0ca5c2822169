"""Golden renderings: the table, Markdown, HTML, GitHub and JUnit output of three reports, pinned.

The three reports span the verdicts: exploding (30 Linear(1, 1) layers of weight 5: fails the default
gate), vanishing (the 30-layer ReLU MLP with Xavier init) and healthy (the same with He init). The
last two are rebuilt from the committed golden JSON (``tests/golden/reports``), so a change in
measurement shows up there and a change in presentation shows up here. HTML is pinned without its
figures (matplotlib's SVG differs between releases). Regenerate on purpose with
``GRADCHECK_UPDATE_GOLDEN=1 pytest tests/render/test_golden_renderings.py`` and review the diff.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from gradcheck_cli.render.formats import FORMATS
from gradcheck_cli.report.model import Report

ROOT = Path(__file__).resolve().parents[1] / "golden"
UPDATE = bool(os.environ.get("GRADCHECK_UPDATE_GOLDEN"))
REPORTS = {"vanishing": "bad_relu_mlp.module", "healthy": "he_relu_mlp.module"}
SUFFIX = {"table": "txt", "markdown": "md", "html": "html", "github": "txt", "junit": "xml"}
WIDTHS = {"table": 160, "table-compact": 80}


def _report(name: str) -> Report:
    if name == "exploding":
        import torch
        from conftest import chain

        from gradcheck_cli import analyze

        return analyze(chain(30, 5.0), torch.randn(64, 1, generator=torch.Generator().manual_seed(0)))
    return Report.from_dict(json.loads((ROOT / "reports" / f"{REPORTS[name]}.json").read_text()))


def _plain(renderable, width: int) -> str:  # noqa: ANN001
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, force_terminal=False, emoji=False, highlight=False,
            _environ={}).print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def render(name: str, fmt: str) -> str:
    report = _report(name)
    if fmt.startswith("table"):
        width = WIDTHS[fmt]
        return _plain(FORMATS["table"].report(report, width), width)
    return FORMATS[fmt].report(report, None)


@pytest.mark.parametrize("fmt", ["table", "table-compact", "markdown", "html", "github", "junit"])
@pytest.mark.parametrize("name", ["exploding", *sorted(REPORTS)])
def test_rendering_matches_golden(name: str, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradcheck_cli.render import plots

    monkeypatch.setattr(plots, "plots_available", lambda: False)
    text = render(name, fmt)
    golden = ROOT / "renderings" / f"{name}.{fmt}.{SUFFIX[fmt.split('-')[0]]}"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden.name}: run with GRADCHECK_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{golden.name} changed: review, then regenerate with GRADCHECK_UPDATE_GOLDEN=1"
