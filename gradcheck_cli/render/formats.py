"""Every output format, once: its name, file suffixes and how it renders a report and a comparison.

``analyze``, ``render`` and ``compare`` all choose from this one table (``compare`` offers the formats
that can show a comparison). Renderers are imported when used, so ``--help`` stays light; each one
returns a string or a rich renderable and never prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from gradcheck_cli.render.grouping import View
    from gradcheck_cli.report.compare import Comparison
    from gradcheck_cli.report.model import Report

Rendered = Any  # str, or a rich renderable (the table format on a terminal)


def _table(report: Report, width: int | None, view: View | None = None) -> Rendered:
    from gradcheck_cli.render.table import render_rich

    return render_rich(report, width=width, view=view)


def _json(report: Report, width: int | None, view: View | None = None) -> Rendered:
    return report.to_json()


def _markdown(report: Report, width: int | None, view: View | None = None) -> Rendered:
    from gradcheck_cli.render.markdown import render_markdown

    return render_markdown(report, view)


def _html(report: Report, width: int | None, view: View | None = None) -> Rendered:
    from gradcheck_cli.render.html import render_html

    return render_html(report, view)


def _github(report: Report, width: int | None, view: View | None = None) -> Rendered:
    from gradcheck_cli.render.github import render_github

    return render_github(report)


def _junit(report: Report, width: int | None, view: View | None = None) -> Rendered:
    from gradcheck_cli.render.junit import render_junit

    return render_junit(report)


def _comparison_table(comparison: Comparison, show_all: bool) -> Rendered:
    from gradcheck_cli.render.comparison import render_comparison_rich

    return render_comparison_rich(comparison, show_all)


def _comparison_json(comparison: Comparison, show_all: bool) -> Rendered:
    return comparison.to_json()


def _comparison_markdown(comparison: Comparison, show_all: bool) -> Rendered:
    from gradcheck_cli.render.comparison import render_comparison_markdown

    return render_comparison_markdown(comparison, show_all)


def _comparison_github(comparison: Comparison, show_all: bool) -> Rendered:
    from gradcheck_cli.render.comparison import render_comparison_github

    return render_comparison_github(comparison)


@dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    """File suffixes that choose this format for ``--output`` when ``--format`` is not given."""
    report: Callable[[Report, int | None, View | None], Rendered]
    """(report, console width or None for a file, the layout of the layer tables or None for the default) -> the
    rendering (formats without layer tables ignore the layout)."""
    comparison: Callable[[Comparison, bool], Rendered] | None = None
    """(comparison, list unchanged layers too) -> the rendering; None: not offered by ``compare``."""
    step_summary: bool = False
    """Also append the Markdown rendering to ``$GITHUB_STEP_SUMMARY`` (in an Actions job)."""
    wants_width: bool = False
    """The rendering is laid out to the console's width (the table); the others are given None."""


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("table", (".txt",), _table, _comparison_table, wants_width=True),
    Format("json", (".json",), _json, _comparison_json),
    Format("markdown", (".md",), _markdown, _comparison_markdown),
    Format("html", (".html", ".htm"), _html),
    Format("github", (), _github, _comparison_github, step_summary=True),
    Format("junit", (".xml",), _junit),
)}
REPORT_FORMATS: tuple[str, ...] = tuple(FORMATS)
COMPARISON_FORMATS: tuple[str, ...] = tuple(name for name, f in FORMATS.items() if f.comparison is not None)


def choose(name: str | None, output: Path | None, offered: tuple[str, ...] = REPORT_FORMATS) -> Format:
    """``--format`` if given, else the output file's suffix (JSON when unknown or not offered), else the table."""
    if name is not None:
        return FORMATS[name]
    if output is not None:
        by_suffix = {suffix: f for f in FORMATS.values() if f.name in offered for suffix in f.suffixes}
        return by_suffix.get(output.suffix.lower(), FORMATS["json"])
    return FORMATS["table"]


def step_summary(rendered_for: Report | Comparison) -> str:
    """The Markdown that ``--format github`` appends to the job summary."""
    from gradcheck_cli.report.compare import Comparison

    if isinstance(rendered_for, Comparison):
        return _comparison_markdown(rendered_for, False)
    return _markdown(rendered_for, None)
