"""Presentation choices shared by the text renderers (rich, Markdown)."""

from __future__ import annotations

from gradcheck_cli.report import Finding

GROUP_AT = 4
"""Findings of one kind on this many layers or more share a row (the JSON keeps every one)."""


def group_findings(findings: list[Finding]) -> list[list[Finding]]:
    """Findings in report order, those of a (kind, severity) met GROUP_AT times or more merged into one
    group at the place of its first member (they need not be consecutive)."""
    by_key: dict[tuple[str, str], list[Finding]] = {}
    for f in findings:
        by_key.setdefault((f.kind, f.severity), []).append(f)
    groups: list[list[Finding]] = []
    emitted: set[tuple[str, str]] = set()
    for f in findings:
        key = (f.kind, f.severity)
        if len(by_key[key]) >= GROUP_AT:
            if key not in emitted:
                groups.append(by_key[key])
                emitted.add(key)
        else:
            groups.append([f])
    return groups
