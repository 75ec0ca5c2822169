"""The report formats the command line writes: their names, file suffixes and renderers.

Renderers are imported on use, so ``--help`` stays light; nothing here prints.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"
    github = "github"
    junit = "junit"


SUFFIX_FORMATS = {
    ".json": OutputFormat.json, ".txt": OutputFormat.table, ".md": OutputFormat.markdown,
    ".html": OutputFormat.html, ".htm": OutputFormat.html, ".xml": OutputFormat.junit,
}

RENDERERS = {
    OutputFormat.table: ("gradcheck_cli.render.table", "render_rich"),
    OutputFormat.json: ("gradcheck_cli.render.json_", "render_json"),
    OutputFormat.markdown: ("gradcheck_cli.render.markdown", "render_markdown"),
    OutputFormat.html: ("gradcheck_cli.render.html", "render_html"),
    OutputFormat.github: ("gradcheck_cli.render.github", "render_github"),
    OutputFormat.junit: ("gradcheck_cli.render.junit", "render_junit"),
}
"""Format -> (module, function): imported on use, so --help stays light."""


def choose_format(fmt: OutputFormat | None, output: Path | None) -> OutputFormat:
    """``--format`` if given, else the output file's suffix (JSON when unknown), else the table on stdout."""
    if fmt is not None:
        return fmt
    if output is not None:
        return SUFFIX_FORMATS.get(output.suffix.lower(), OutputFormat.json)
    return OutputFormat.table


def render_report(report, fmt: OutputFormat, width: int | None):  # noqa: ANN001, ANN202
    """The report in ``fmt``; ``width`` (the console's, None for files) picks compact or full tables."""
    import importlib

    module, function = RENDERERS[fmt]
    render = getattr(importlib.import_module(module), function)
    return render(report, width=width) if fmt is OutputFormat.table else render(report)
