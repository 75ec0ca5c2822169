"""Presentation choices shared by the text renderers (rich, Markdown, annotations)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from gradcheck_cli.render.numbers import num
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


LIST_LIMIT = 8
"""Layer names listed before ``...``: the one truncation rule of every renderer."""


def layer_list(names: Sequence[str], limit: int = LIST_LIMIT) -> str:
    """``a, b, c`` or ``a, b, ... (12 in all)``: long lists of layer names stay one readable line."""
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"


@dataclass(frozen=True)
class FindingGroup:
    """Findings of one kind and severity shown as one row: what every renderer says about them."""

    findings: list[Finding]
    shown: Mapping[str, str] = field(default_factory=dict)
    """Layer name -> how tables show it (``0 (Linear)``; :func:`gradcheck_cli.render.grouping.names`)."""

    @property
    def first(self) -> Finding:
        return self.findings[0]

    @property
    def names(self) -> list[str]:
        return [self.shown.get(f.layer, f.layer) for f in self.findings]

    def layers(self, limit: int = LIST_LIMIT) -> str:
        """The layer, or ``N layers: a, b, ... (N in all)``."""
        if len(self.findings) == 1:
            return self.names[0]
        return f"{len(self.findings)} layers: {layer_list(self.names, limit)}"

    def value(self) -> str:
        """The measured value, or the range ``low..high`` over the group."""
        if len(self.findings) == 1:
            return num(self.first.value)
        values = [f.value for f in self.findings]
        return f"{num(min(values))}..{num(max(values))}"

    def more(self) -> str:
        """What follows the first finding's message: `` (and N more layers like it)`` or nothing."""
        return "" if len(self.findings) == 1 else f" (and {len(self.findings) - 1} more layers like it)"

    def message(self) -> str:
        return self.first.message + self.more()


def group_findings(findings: Sequence[Finding], shown: Mapping[str, str] | None = None) -> list[FindingGroup]:
    """Findings grouped by (kind, severity); ``shown``: display names of the layers."""
    return [FindingGroup(group, shown or {}) for group in group_by(findings, lambda f: (f.kind, f.severity))]
