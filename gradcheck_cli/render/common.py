"""Presentation choices shared by the text renderers (rich, Markdown, annotations)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from gradcheck_cli.report.model import Finding

GROUP_AT = 4
"""Items of one key met this many times or more share a row (the JSON keeps every one)."""

T = TypeVar("T")


def group_by(items: Sequence[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """Items in order, those whose key occurs GROUP_AT times or more merged into one group at the
    place of its first member (they need not be consecutive)."""
    by_key: dict[Hashable, list[T]] = {}
    for item in items:
        by_key.setdefault(key(item), []).append(item)
    groups: list[list[T]] = []
    emitted: set[Hashable] = set()
    for item in items:
        k = key(item)
        if len(by_key[k]) >= GROUP_AT:
            if k not in emitted:
                groups.append(by_key[k])
                emitted.add(k)
        else:
            groups.append([item])
    return groups


def group_findings(findings: Sequence[Finding]) -> list[list[Finding]]:
    """Findings grouped by (kind, severity)."""
    return group_by(findings, lambda f: (f.kind, f.severity))


def layer_list(names: Sequence[str], limit: int = 8) -> str:
    """``a, b, c`` or ``a, b, ... (12 in all)``: long lists of layer names stay one readable line."""
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"
