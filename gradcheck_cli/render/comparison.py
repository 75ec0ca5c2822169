"""Renderers for ``gradcheck compare``: terminal table, Markdown (PR comments), GitHub annotations, JSON.

Only layers that moved (regressed, improved, added, removed) are listed by default; unchanged
layers are counted, so a 200-layer model's comparison stays readable.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gradcheck_cli.report.compare import Comparison, FindingChange, LayerChange, TrainingChange
from gradcheck_cli.render.common import GROUP_AT, group_by, layer_list
from gradcheck_cli.render.github import command
from gradcheck_cli.render.markdown import code, escape
from gradcheck_cli.render.numbers import num, pct

STATUS_STYLE = {"regressed": "bold red", "changed": "bold yellow", "improved": "bold green", "unchanged": "bold green",
                "added": "cyan", "removed": "cyan"}
STATUS_ICON = {"regressed": "❌", "changed": "⚠️", "improved": "✅", "unchanged": "✅"}


def moved(comparison: Comparison, show_all: bool = False) -> list[LayerChange]:
    return [l for l in comparison.layers if show_all or l.status != "unchanged"]


def _dead(change: LayerChange) -> str:
    if change.baseline_dead is None and change.current_dead is None:
        return "-"
    return f"{pct(change.baseline_dead)} -> {pct(change.current_dead)}"


def _footer(comparison: Comparison, shown: int) -> str:
    hidden = len(comparison.layers) - shown
    return (f"{hidden} more layer(s) unchanged within tolerance {comparison.tolerance:g}x (dead ±{comparison.dead_tolerance:.0%})"
            if hidden else "")


def finding_groups(comparison: Comparison) -> list[list[FindingChange]]:
    """Finding changes of one (change, kind, fails) on many layers share a row."""
    return group_by(comparison.findings, lambda f: (f.change, f.kind, f.fails))


def _layers(group: list[FindingChange]) -> str:
    step = "" if group[0].step is None else f" at step {group[0].step}"
    return (group[0].layer if len(group) == 1 else f"{len(group)} layers: " + layer_list([f.layer for f in group])) + step


def training_rows(change: TrainingChange) -> list[list[str]]:
    """(what, baseline, current, change) for both runs: steps completed, final loss, max grad norm."""
    old, new = change.baseline, change.current
    return [
        ["steps completed", f"{old.completed}/{old.steps}", f"{new.completed}/{new.steps}", ""],
        ["final loss", _value(old.final_loss), _value(new.final_loss), _times(change.loss_change)],
        ["max global grad norm", _value(old.max_grad_norm), _value(new.max_grad_norm), _times(change.grad_norm_change)],
    ]


TRAINING_HEADERS = ["training", "baseline", "current", "change"]


def _value(value: float | None) -> str:
    """A final loss is None when it was NaN/Inf; a max grad norm is then inf."""
    return "non-finite" if value is None else num(value)


def _times(ratio: float | None) -> str:
    return "" if ratio is None else f"{num(ratio)}x"


def render_comparison_rich(comparison: Comparison, show_all: bool = False) -> RenderableType:
    parts: list[RenderableType] = [Text(f"gradcheck compare {comparison.baseline} -> {comparison.current}", style="bold")]
    parts += [Text(f"note: {note}", style="dim") for note in comparison.notes]
    rows = moved(comparison, show_all)
    if rows:
        table = Table(title="Layers", box=box.SIMPLE_HEAD, title_justify="left")
        for title, justify in (("layer", "left"), ("status", "left"), ("flow before", "right"), ("flow now", "right"),
                               ("change", "right"), ("dead", "right"), ("why", "left")):
            table.add_column(title, justify=justify, overflow="fold")
        for l in rows:
            table.add_row(l.layer, Text(l.status, style=STATUS_STYLE[l.status]), num(l.baseline_flow), num(l.current_flow),
                          num(l.flow_change), _dead(l), "; ".join(l.reasons))
        parts.append(table)
    if footer := _footer(comparison, len(rows)):
        parts.append(Text(footer, style="dim"))
    if comparison.training is not None:
        table = Table(title="Training", box=box.SIMPLE_HEAD, title_justify="left")
        for title in TRAINING_HEADERS:
            table.add_column(title, justify="left" if title == "training" else "right")
        for row in training_rows(comparison.training):
            table.add_row(*row)
        parts.append(table)
    if comparison.findings:
        table = Table(title="Findings", box=box.SIMPLE_HEAD, title_justify="left")
        for title in ("change", "kind", "layer", "severity", "message"):
            table.add_column(title, overflow="fold")
        for group in finding_groups(comparison):
            f = group[0]
            style = "bold red" if f.fails else ("yellow" if f.change == "new" else "green")
            table.add_row(Text(f.change + (" (fails)" if f.fails else ""), style=style), f.kind, _layers(group), f.severity,
                          f.message + ("" if len(group) == 1 else " (first of them)"))
        parts.append(table)
    parts.append(Text(f"{comparison.verdict} (exit code {comparison.exit_code})", style=STATUS_STYLE[comparison.status]))
    return Group(*parts)


def render_comparison_markdown(comparison: Comparison, show_all: bool = False) -> str:
    out = [f"### {STATUS_ICON[comparison.status]} gradcheck compare: {escape(comparison.verdict)}", "",
           f"{code(comparison.baseline)} → {code(comparison.current)} · tolerance {comparison.tolerance:g}x · "
           f"dead ±{comparison.dead_tolerance:.0%} · exit code {comparison.exit_code}"]
    out += [f"> note: {escape(note)}" for note in comparison.notes]
    rows = moved(comparison, show_all)
    if rows:
        out += ["", "| layer | status | flow before | flow now | change | dead | why |", "|:--|:--|--:|--:|--:|--:|:--|"]
        out += [f"| {escape(l.layer)} | {l.status} | {num(l.baseline_flow)} | {num(l.current_flow)} | {num(l.flow_change)} | "
                f"{_dead(l)} | {escape('; '.join(l.reasons))} |" for l in rows]
    if footer := _footer(comparison, len(rows)):
        out += ["", escape(footer)]
    if comparison.training is not None:
        out += ["", "| " + " | ".join(TRAINING_HEADERS) + " |", "|:--|--:|--:|--:|"]
        out += ["| " + " | ".join(row) + " |" for row in training_rows(comparison.training)]
    if comparison.findings:
        out += ["", "| change | kind | layer | severity | message |", "|:--|:--|:--|:--|:--|"]
        for group in finding_groups(comparison):
            f = group[0]
            out.append(f"| {f.change}{' (fails)' if f.fails else ''} | {code(f.kind)} | {escape(_layers(group))} | "
                       f"{f.severity} | {escape(f.message)}{'' if len(group) == 1 else ' (first of them)'} |")
    return "\n".join(out) + "\n"


def render_comparison_github(comparison: Comparison) -> str:
    """Regressed layers and new findings as annotations, many alike in one (GitHub shows 10 per level)."""
    regressed = [l for l in comparison.layers if l.status == "regressed"]
    if len(regressed) >= GROUP_AT:
        lines = [command("error", f"gradcheck regression: {len(regressed)} layers",
                         f"{layer_list([l.layer for l in regressed])}; first: {regressed[0].layer}: {'; '.join(regressed[0].reasons)}")]
    else:
        lines = [command("error", f"gradcheck regression: {l.layer}", "; ".join(l.reasons)) for l in regressed]
    for group in finding_groups(comparison):
        f = group[0]
        if f.change == "new":
            lines.append(command("error" if f.fails else "warning", f"gradcheck new {f.kind}: {_layers(group)}", f.message))
    lines.append(command("error" if comparison.exit_code else "notice", "gradcheck compare", comparison.verdict))
    return "\n".join(lines) + "\n"
