"""JSON: the report's dictionary, indented, always valid (no NaN/Infinity tokens)."""

from __future__ import annotations

from gradcheck_cli.report.model import Report


def render_json(report: Report) -> str:
    return report.to_json()
