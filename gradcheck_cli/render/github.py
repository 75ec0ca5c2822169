"""GitHub Actions workflow commands: one ``::error``/``::warning``/``::notice`` line per finding.

GitHub reads these from a step's stdout and shows them on the run and the pull request. The level is
the finding's severity (error, warning; info findings are notices), the same word every other
format prints; the verdict closes the list, an error when the step fails. Findings of one kind on many layers share
one annotation (GitHub shows only the first 10 errors and 10 warnings of a step). Everything from the model is escaped
the way the runner decodes it, so a layer name cannot end the line and inject a second command.
"""

from __future__ import annotations

from gradcheck_cli.render.common import FindingGroup, group_findings
from gradcheck_cli.render.grouping import names
from gradcheck_cli.render.training import step_note
from gradcheck_cli.report.model import Finding, Report


LEVELS = ("error", "warning", "notice")


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(level: str, title: str, message: str) -> str:
    """One workflow command line (``level`` is error, warning or notice)."""
    return f"::{level} title={escape_property(title)}::{escape_data(message)}"


def level(finding: Finding) -> str:
    return "notice" if finding.severity == "info" else finding.severity


def annotation(group: FindingGroup) -> str:
    first = group.first
    where = (group.names[0] if len(group.findings) == 1 else f"{len(group.findings)} layers") + step_note(first)
    listed = "" if len(group.findings) == 1 else f" ({group.layers()})"
    return command(level(first), f"gradcheck {first.kind}: {where}", f"{group.message()}{listed}. Fix: {first.hint}")


def render_github(report: Report) -> str:
    """Errors first, then warnings, then notices."""
    groups = sorted(group_findings(report.findings, names(report)), key=lambda g: LEVELS.index(level(g.first)))
    lines = [annotation(group) for group in groups]
    lines.append(command("error" if report.summary.exit_code else "notice", "gradcheck", report.summary.verdict))
    return "\n".join(lines) + "\n"
