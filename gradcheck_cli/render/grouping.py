"""Which rows the layer tables show: every layer, repeated blocks folded into one row per block, or module
names cut at a depth; ``--only-findings`` and ``--max-rows`` on top. Pure (no rich, no HTML): the table,
Markdown and HTML renderers all draw the same :class:`Layout`.

A *stack* is a run of numbered children (``transformer.h.0``, ``transformer.h.1``, ...: what ``nn.ModuleList`` and
``nn.Sequential`` name them) whose members share sub-layer names (``attn.c_attn``): the roles of README "Verdicts".
A model with a stack of :data:`MIN_BLOCKS` or more blocks and :data:`GROUP_FROM_ROWS` or more rows gets one row per
stack in the layer table and a block table per stack (one row per block, one column per role); smaller models keep
the per-layer table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gradcheck_cli.diagnose.registry import SEVERITIES
from gradcheck_cli.layers import NORM_KINDS, WEIGHT_KINDS, display_name
from gradcheck_cli.render.numbers import num
from gradcheck_cli.report.model import Finding, InitAdvice, LayerReport, Report

MIN_BLOCKS = 4
"""Blocks a stack needs before it is folded (fewer read fine one layer per row)."""
GROUP_FROM_ROWS = 40
"""Models with fewer rows keep the per-layer table even when they repeat blocks."""

_INDEX = re.compile(r"\d+")


@dataclass(frozen=True)
class View:
    """How the layer tables are laid out: ``analyze``/``render`` ``--depth``, ``--only-findings``, ``--max-rows``."""

    depth: int | None = None
    """Rows are module names cut at this many dot-separated parts (``--depth 2``: ``transformer.h``); 0 shows every
    layer; None: automatic (a row per block for models that repeat blocks, see the module docstring)."""
    only_findings: bool = False
    """Only rows (layers, blocks, groups, init advice) that a finding names."""
    max_rows: int | None = None
    """At most this many rows per table: rows with findings first, the rest spread evenly, the gaps marked."""


@dataclass(frozen=True)
class Elided:
    """A gap left by ``--max-rows``: how many rows it stands for."""

    count: int


def _severity(findings: Iterable[Finding]) -> str | None:
    ranked = sorted((f.severity for f in findings), key=SEVERITIES.index)
    return ranked[0] if ranked else None


@dataclass(frozen=True)
class LayerGroup:
    """Several layers shown as one row: a whole stack (``transformer.h.*``) or a module at ``--depth``."""

    name: str
    members: list[LayerReport]
    findings: list[Finding]
    blocks: int = 0
    """For a stack: its number of blocks (0 for a ``--depth`` group)."""
    anchor: str = ""

    @property
    def severity(self) -> str | None:
        return _severity(self.findings)

    @property
    def label(self) -> str:
        if self.single:
            return display_name(self.name, self.members[0].type)
        return self.name

    @property
    def single(self) -> bool:
        """One layer under its own name (a ``--depth`` group of one)."""
        return len(self.members) == 1 and self.members[0].name == self.name

    @property
    def indices(self) -> str:
        first, last = self.members[0].index, self.members[-1].index
        return str(first) if first == last else f"{first}-{last}"

    @property
    def kind(self) -> str:
        if self.single:
            return self.members[0].kind
        return f"{self.blocks} blocks" if self.blocks else f"{len(self.members)} layers"

    def values(self, get) -> list[float]:  # noqa: ANN001 - get: LayerReport -> float | None
        out = []
        for layer in self.members:
            value = get(layer)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                out.append(value)
        return out

    def span(self, get, digits: int = 3) -> str:  # noqa: ANN001
        """``low..high`` of a per-layer value over the members (one value: itself; none: ``-``)."""
        values = self.values(get)
        if not values:
            return "-"
        low, high = min(values), max(values)
        return num(low, digits) if low == high else f"{num(low, digits)}..{num(high, digits)}"

    def worst(self, get) -> float | None:  # noqa: ANN001
        values = self.values(get)
        return max(values) if values else None


@dataclass(frozen=True)
class Block:
    """One block of a stack: its layers by role (the name after the block index: ``attn.c_attn``)."""

    stack: str
    index: str
    layers: dict[str, LayerReport]
    findings: list[Finding]
    anchor: str = ""

    @property
    def name(self) -> str:
        return f"{self.stack}.{self.index}" if self.stack else self.index

    @property
    def severity(self) -> str | None:
        return _severity(self.findings)

    def worst(self, get) -> float | None:  # noqa: ANN001
        values = [v for l in self.layers.values() if (v := get(l)) is not None and not math.isnan(v)]
        return max(values) if values else None


@dataclass(frozen=True)
class Role:
    """A column of a block table."""

    name: str
    kind: str
    """The kind of the role's layer in the first block (weight roles stay in the compact table)."""

    @property
    def weight(self) -> bool:
        return self.kind in WEIGHT_KINDS or self.kind in NORM_KINDS or self.kind == "embedding"


@dataclass(frozen=True)
class BlockTable:
    stack: str
    roles: list[Role]
    rows: list[Block | Elided]
    blocks: int
    dead: bool
    """Some layer of the stack has a dead-unit ratio (a rectifier): the column is worth showing."""
    saturation: bool


@dataclass(frozen=True)
class InitRow:
    """One row of the init table: a layer, or every layer of one role in a stack (same advice)."""

    label: str
    members: list[LayerReport]
    flagged: bool
    """An init_mismatch finding names one of them."""

    @property
    def advice(self) -> InitAdvice:
        assert self.members[0].init is not None
        return self.members[0].init

    @property
    def informational(self) -> bool:
        return all(l.init is not None and l.init.informational for l in self.members)

    @property
    def status(self) -> str:
        """``fix`` (an init_mismatch finding names it), ``info`` (no finding backs it) or empty."""
        return "fix" if self.flagged else "info" if self.informational else ""

    def span(self, get, digits: int = 3) -> str:  # noqa: ANN001 - get: InitAdvice -> float
        """The value; over several layers within 5% of each other ``~median``, else ``low..high``."""
        values = sorted(get(l.init) for l in self.members if l.init is not None)
        low, high = values[0], values[-1]
        if num(low, digits) == num(high, digits):
            return num(low, digits)
        if low > 0 and high / low <= 1.05:
            return "~" + num(values[len(values) // 2], digits)
        return f"{num(low, 2)}..{num(high, 2)}"


@dataclass(frozen=True)
class Layout:
    """What the layer, block and init tables show."""

    mode: str
    """``layers`` (one row per layer), ``blocks`` (stacks folded, block tables below) or ``depth``."""
    rows: list[LayerReport | LayerGroup | Elided]
    blocks: list[BlockTable] = field(default_factory=list)
    init: list[InitRow | Elided] = field(default_factory=list)
    anchors: dict[str, str] = field(default_factory=dict)
    """Layer name -> the id of the row that shows it (HTML links findings to it)."""
    note: str | None = None
    """How to see more (a caption under the layer table)."""


def _split(name: str) -> tuple[str, str, str] | None:
    """``transformer.h.3.attn.c_attn`` -> (``transformer.h``, ``3``, ``attn.c_attn``): the first numbered part."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if _INDEX.fullmatch(part):
            return ".".join(parts[:i]), part, ".".join(parts[i + 1:])
    return None


def stacks(layers: Sequence[LayerReport]) -> dict[str, dict[str, dict[str, LayerReport]]]:
    """Stack prefix -> block index -> role -> layer, for the stacks that qualify (MIN_BLOCKS blocks sharing a role)."""
    found: dict[str, dict[str, dict[str, LayerReport]]] = {}
    for layer in layers:
        split = _split(layer.name)
        if split is None:
            continue
        stack, index, role = split
        found.setdefault(stack, {}).setdefault(index, {}).setdefault(role, layer)
    qualified = {}
    for stack, blocks in found.items():
        counts: dict[str, int] = {}
        for roles in blocks.values():
            for role in roles:
                if role:
                    counts[role] = counts.get(role, 0) + 1
        if len(blocks) >= MIN_BLOCKS and any(n >= MIN_BLOCKS for n in counts.values()):
            qualified[stack] = blocks
    return qualified


def _findings_by_layer(report: Report) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in report.findings:
        out.setdefault(f.layer, []).append(f)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def layout(report: Report, view: View | None = None) -> Layout:
    """The rows of every layer-level table for ``report`` under ``view``."""
    view = view or View()
    layers = report.layers
    by_layer = _findings_by_layer(report)
    found = stacks(layers)
    auto = view.depth is None and bool(found) and len(layers) >= GROUP_FROM_ROWS
    if view.depth:
        mode = "depth"
    else:
        mode = "blocks" if auto else "layers"
    anchors: dict[str, str] = {l.name: f"layer-{l.index}" for l in layers}
    rows: list[LayerReport | LayerGroup | Elided] = []
    tables: list[BlockTable] = []
    if mode == "layers":
        rows = list(layers)
    elif mode == "depth":
        assert view.depth is not None
        groups: dict[str, list[LayerReport]] = {}
        for layer in layers:
            groups.setdefault(".".join(layer.name.split(".")[:view.depth]), []).append(layer)
        for name, members in groups.items():
            anchor = f"group-{_slug(name)}"
            anchors.update({l.name: anchor for l in members})
            rows.append(LayerGroup(name, members, [f for l in members for f in by_layer.get(l.name, [])], anchor=anchor))
    else:
        member_of = {layer.name: stack for stack, blocks in found.items() for roles in blocks.values()
                     for layer in roles.values()}
        members: dict[str, list[LayerReport]] = {}
        for layer in layers:
            split = _split(layer.name)
            if split is not None and split[0] in found:
                member_of[layer.name] = split[0]  # a second call of a role (``attn#2``) stays in its block
                members.setdefault(split[0], []).append(layer)
        emitted: set[str] = set()
        for layer in layers:
            stack = member_of.get(layer.name)
            if stack is None:
                rows.append(layer)
            elif stack not in emitted:
                emitted.add(stack)
                group = members[stack]
                rows.append(LayerGroup(f"{stack}.*" if stack else "*", group,
                                  [f for l in group for f in by_layer.get(l.name, [])], blocks=len(found[stack]),
                                  anchor=f"stack-{_slug(stack)}"))
        for stack, blocks in found.items():
            tables.append(_block_table(stack, blocks, members[stack], by_layer, view, anchors))
    if view.only_findings:
        rows = [r for r in rows if (r.findings if isinstance(r, LayerGroup) else by_layer.get(r.name))]  # type: ignore[union-attr]
    rows = limit(rows, view.max_rows, lambda r: bool(r.findings if isinstance(r, LayerGroup) else by_layer.get(r.name)))  # type: ignore[union-attr]
    return Layout(mode, rows, tables, _init_rows(report, found if mode == "blocks" else {}, view), anchors,
                  _note(mode, view, len(layers)))


def _note(mode: str, view: View, count: int) -> str | None:
    if mode == "blocks":
        return (f"{count} layers: each repeated stack is one row here and one row per block below "
                "(--depth 0: every layer; --depth N: module names cut at N parts)")
    if mode == "depth":
        return f"{count} layers grouped by the first {view.depth} part(s) of their names (--depth 0: every layer)"
    return None


def _block_table(stack: str, blocks: dict[str, dict[str, LayerReport]], members: list[LayerReport],
                 by_layer: dict[str, list[Finding]], view: View, anchors: dict[str, str]) -> BlockTable:
    counts: dict[str, int] = {}
    kinds: dict[str, str] = {}
    for roles in blocks.values():
        for role, layer in roles.items():
            counts[role] = counts.get(role, 0) + 1
            kinds.setdefault(role, layer.kind)
    roles = [Role(role, kinds[role]) for role in counts if counts[role] >= MIN_BLOCKS or len(blocks) < MIN_BLOCKS]
    in_block: dict[str, list[LayerReport]] = {}
    for layer in members:
        split = _split(layer.name)
        assert split is not None
        in_block.setdefault(split[1], []).append(layer)
    rows: list[Block | Elided] = []
    for index, by_role in blocks.items():
        anchor = f"block-{_slug(stack)}-{index}"
        anchors.update({l.name: anchor for l in in_block.get(index, [])})
        findings = [f for l in in_block.get(index, []) for f in by_layer.get(l.name, [])]
        rows.append(Block(stack, index, by_role, findings, anchor))
    if view.only_findings:
        rows = [r for r in rows if isinstance(r, Block) and r.findings]
    rows = limit(rows, view.max_rows, lambda r: bool(r.findings))  # type: ignore[union-attr]
    return BlockTable(stack, roles, rows, len(blocks),
                      dead=any(l.activation is not None and l.activation.dead_ratio is not None for l in members),
                      saturation=any(l.activation is not None and l.activation.saturation is not None for l in members))


def _init_rows(report: Report, found: dict[str, dict[str, dict[str, LayerReport]]], view: View) -> list[InitRow | Elided]:
    """Init advice per layer; in block mode, one row per (stack, role, advice) instead of one per layer."""
    flagged = {f.layer for f in report.findings if f.kind == "init_mismatch"}
    named = {f.layer for f in report.findings}
    groups: dict[tuple, list[LayerReport]] = {}
    for layer in report.layers:
        i = layer.init
        if i is None:
            continue
        split = _split(layer.name)
        if split is not None and split[0] in found:
            stack, _, role = split
            key: tuple = (stack, role, i.fan_in, i.fan_out, i.activation_after, i.normalized_after, i.scheme, i.call,
                          i.informational, layer.name in flagged)
        else:
            key = (layer.name,)
        groups.setdefault(key, []).append(layer)
    rows: list[InitRow | Elided] = []
    for key, members in groups.items():
        if len(key) == 1 or len(members) == 1:
            label = display_name(members[0].name, members[0].type)
        else:
            label = f"{key[0]}.*.{key[1]}" if key[0] else f"*.{key[1]}"
        rows.append(InitRow(label, members, any(l.name in flagged for l in members)))
    if view.only_findings:
        rows = [r for r in rows if isinstance(r, InitRow) and any(l.name in named for l in r.members)]
    return limit(rows, view.max_rows, lambda r: r.flagged)  # type: ignore[union-attr]


def limit(rows: list, max_rows: int | None, keep) -> list:  # noqa: ANN001 - keep: row -> bool
    """At most ``max_rows`` rows, in order: rows for which ``keep`` holds first, the rest spread evenly over the
    table; each run of left-out rows becomes one :class:`Elided`."""
    if max_rows is None or len(rows) <= max_rows:
        return rows
    chosen = [i for i, row in enumerate(rows) if keep(row)][:max_rows]
    taken = set(chosen)
    rest = [i for i in range(len(rows)) if i not in taken]
    free = max_rows - len(chosen)
    if free > 0 and rest:
        if free == 1:
            picked = [rest[0]]
        else:
            picked = sorted({rest[round(k * (len(rest) - 1) / (free - 1))] for k in range(free)})
        chosen += picked
    out: list = []
    gap = 0
    kept = set(chosen)
    for i, row in enumerate(rows):
        if i in kept:
            if gap:
                out.append(Elided(gap))
                gap = 0
            out.append(row)
        else:
            gap += 1
    if gap:
        out.append(Elided(gap))
    return out


def finding_count(findings: list) -> str:  # noqa: ANN001
    """``2 error, 1 warning`` or ``-``."""
    counts = [(s, sum(f.severity == s for f in findings)) for s in SEVERITIES]
    return ", ".join(f"{n} {s}" for s, n in counts if n) or "-"


def label(layer: LayerReport) -> str:
    """A layer row's name as the tables show it (``0 (Linear)``)."""
    return display_name(layer.name, layer.type)


def names(report: Report) -> dict[str, str]:
    """Layer name -> display name, for the places that know a layer by name only (findings, the verdict)."""
    return {l.name: display_name(l.name, l.type) for l in report.layers}
