"""Rich tables for the terminal: layers (with a log-scale backward-signal bar), findings, init, verdict."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gradcheck_cli.diagnose.registry import fails
from gradcheck_cli.render.common import group_findings
from gradcheck_cli.render import training as tr
from gradcheck_cli.render.grouping import (BlockTable, Elided, InitRow, LayerGroup, Layout, View, finding_count, label,
                                          layout, names)
from gradcheck_cli.render.numbers import centring_shown, log_bar, mean_shown, num, pct
from gradcheck_cli.report.model import ActivationStats, LayerReport, Report

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
STATUS_STYLE = {"fail": "bold red", "warn": "bold yellow", "ok": "bold green"}


COMPACT_BELOW = 150
"""Consoles narrower than this get the compact layer table (CI logs outside a terminal get 160)."""


def render_rich(report: Report, width: int | None = None, view: View | None = None) -> RenderableType:
    """All sections; ``width`` (the console's) picks the full or the compact layer table; ``view`` the rows
    (repeated blocks folded, ``--depth``, ``--only-findings``, ``--max-rows``)."""
    compact = width is not None and width < COMPACT_BELOW
    rows = layout(report, view)
    parts: list[RenderableType] = [header(report), layer_table(report, compact=compact, width=width, rows=rows)]
    parts += [block_table(report, table, compact=compact) for table in rows.blocks]
    if report.findings:
        parts.append(findings_list(report) if compact else findings_table(report))
    if rows.init:
        parts.append(init_table(report, compact=compact, rows=rows))
    if any(layer.time for layer in report.layers):
        parts.append(time_table(report))
    if report.training is not None:
        parts += training_parts(report, compact=compact)
    parts.append(verdict(report))
    return Group(*parts)


def header(report: Report) -> Text:
    m, r = report.model, report.run
    text = Text()
    text.append("gradcheck ", style="bold")
    text.append(f"{m.source} ({m.format}, {m.parameters:,} parameters)\n")
    text.append(
        f"device {r.device} · mode {r.mode} · loss {r.loss} · {r.batches} batch(es)"
        + (f" of {r.batch_size}" if r.batch_size else "")
        + (f" · {r.samples} samples" if r.samples is not None else "")
        + f" · seed {r.seed}",
        style="dim",
    )
    if r.config:
        text.append(f"\nconfig: {r.config}", style="dim")
    for note in report.notes:
        text.append(f"\nnote: {note}", style="dim")
    return text


@dataclass(frozen=True)
class _Column:
    title: str
    cell: Callable[[LayerReport], RenderableType]
    justify: str = "right"
    short: str | None = None
    """Title in the compact table; None: not shown there (unless a finding is about it)."""
    group: Callable[[LayerGroup], str] = lambda g: "-"
    """The cell of a row that stands for several layers (a stack, a ``--depth`` module)."""


def _act(fn: Callable[[ActivationStats], str]) -> Callable[[LayerReport], str]:
    return lambda layer: fn(layer.activation) if layer.activation else "-"


def _worst(get: Callable[[LayerReport], float | None], fmt: Callable[[float | None], str]) -> Callable[[LayerGroup], str]:
    return lambda g: fmt(g.worst(get))


_DEAD = lambda l: l.activation.dead_ratio if l.activation else None  # noqa: E731
_SAT = lambda l: l.activation.saturation if l.activation else None  # noqa: E731
_REL = lambda l: l.grad.relative_ratio  # noqa: E731


def _columns(bar: Callable[[LayerReport], RenderableType]) -> list[_Column]:
    return [
        _Column("#", lambda l: str(l.index), short="#", group=lambda g: g.indices),
        _Column("layer", label, "left", short="layer", group=lambda g: g.label),
        _Column("kind", lambda l: l.kind, "left", short="kind", group=lambda g: g.kind),
        _Column("act mean", _act(lambda a: num(mean_shown(a.mean, a.std)))),
        _Column("act std", _act(lambda a: num(a.std)), short="std",
                group=lambda g: g.span(lambda l: l.activation.std if l.activation else None)),
        _Column("|m|/s", _act(lambda a: num(centring_shown(a.centring), 2)),
                group=_worst(lambda l: l.activation.centring if l.activation else None, lambda v: num(centring_shown(v), 2))),
        _Column("zeros", _act(lambda a: pct(a.zero_fraction))),
        _Column("dead", _act(lambda a: pct(a.dead_ratio)), short="dead", group=_worst(_DEAD, pct)),
        _Column("sat", _act(lambda a: pct(a.saturation)), group=_worst(_SAT, pct)),
        _Column("grad rms", lambda l: num(l.grad.output_rms), short="grad", group=lambda g: g.span(lambda l: l.grad.output_rms)),
        _Column("backward signal (log)", bar, "left", short="log grad"),
        _Column("|dW|", lambda l: num(l.grad.weight_norm)),
        _Column("|dW|/|W| rel", lambda l: num(l.grad.relative_ratio), group=lambda g: g.span(_REL)),
    ]


FINDING_COLUMNS = {
    "not_zero_centred": "|m|/s", "saturated_activation": "sat", "dead_relu": "dead", "vanishing_activation": "act std",
    "exploding_activation": "act std", "vanishing_gradient": "grad rms", "exploding_gradient": "grad rms",
    "update_ratio": "|dW|/|W| rel",
}
"""The layer-table column each kind of finding is about: the compact table keeps it whenever such a finding is shown."""

BAR_WIDTH = 16
"""Cells of the log bar when the width is unknown (a file); on a console the bar takes the width left over."""
_BAR_MAX = 40


def _bar_width(columns: list[_Column], cells: list[list[str]], titles: list[str], width: int | None) -> tuple[int, str]:
    """(cells, title) of the log bar: what the other columns leave of ``width`` (their widest cell, one border and
    two padding characters each), within [8, 40]; the short title when the long one would not fit."""
    at = [c.title for c in columns].index("backward signal (log)")
    if width is None:
        return BAR_WIDTH, titles[at]
    used = 3 * len(columns) - 1
    for i, _ in enumerate(columns):
        if i != at:
            used += max([len(titles[i])] + [len(row[i]) for row in cells])
    left = width - used
    title = titles[at] if left >= len(titles[at]) else "log grad"
    return max(8, min(_BAR_MAX, left)), title


def layer_table(report: Report, compact: bool = False, width: int | None = None, rows: Layout | None = None) -> Table:
    """Layers in forward order (repeated stacks and ``--depth`` modules one row each; see ``rows``); ``compact``
    keeps the columns that fit 80 characters and those the findings are about; the log bar takes the width left."""
    rows = rows or layout(report)
    values = [l.grad.output_rms for l in report.layers if l.grad.output_rms and math.isfinite(l.grad.output_rms)]
    low, high = (min(values), max(values)) if values else (1.0, 1.0)
    flagged = {f.layer: f.severity for f in report.findings}
    about = {FINDING_COLUMNS[f.kind] for f in report.findings if f.kind in FINDING_COLUMNS}
    bar_cells = [BAR_WIDTH]

    def bar(layer: LayerReport) -> RenderableType:
        if not layer.observed:
            return Text("not observed", "dim")
        colour = "red" if flagged.get(layer.name) == "error" else "green"
        return Text(log_bar(layer.grad.output_rms, low, high, width=bar_cells[0]), colour)

    def group_bar(group: LayerGroup) -> RenderableType:
        spread = group.values(lambda l: l.grad.output_rms if l.grad.output_rms and math.isfinite(l.grad.output_rms) else None)
        if not spread:
            return Text("")
        short = len(log_bar(min(spread), low, high, width=bar_cells[0]))
        long = len(log_bar(max(spread), low, high, width=bar_cells[0]))
        colour = "red" if group.severity == "error" else "green"
        return Text.assemble(("█" * short, colour), ("▒" * (long - short), colour))

    columns = [c for c in _columns(bar) if not compact or c.short or c.title in about]
    titles = [(c.short or c.title) if compact else c.title for c in columns]
    plain = [[_plain_cell(c, row) for c in columns] for row in rows.rows if not isinstance(row, Elided)]
    bar_at = [c.title for c in columns].index("backward signal (log)")
    bar_cells[0], titles[bar_at] = _bar_width(columns, plain, titles, width)
    table = Table(title="Layers (forward order)", title_justify="left", pad_edge=False,
                  box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
                  caption=rows.note, caption_justify="left")
    for column, title in zip(columns, titles):
        table.add_column(title, justify=column.justify,  # type: ignore[arg-type]
                         no_wrap=column.title != "layer", overflow="fold")
    name_at = [c.title for c in columns].index("layer")
    for row in rows.rows:
        if isinstance(row, Elided):
            table.add_row(*["" if c.title != "layer" else Text(_elided(row), "dim") for c in columns])
        elif isinstance(row, LayerGroup):
            cells: list[RenderableType] = [group_bar(row) if c.title == "backward signal (log)" else c.group(row)
                                           for c in columns]
            cells[name_at] = Text(row.label, SEVERITY_STYLE.get(row.severity or "", ""))
            table.add_row(*cells)
        else:
            cells = [column.cell(row) for column in columns]
            cells[name_at] = Text(label(row), SEVERITY_STYLE.get(flagged.get(row.name, ""), ""))
            table.add_row(*cells, style="dim" if not row.observed else "")
    if report.layers and not [r for r in rows.rows if not isinstance(r, Elided)]:
        table.caption = "no layer has a finding (--only-findings)"
    return table


def _plain_cell(column: _Column, row: LayerReport | LayerGroup) -> str:
    if column.title == "backward signal (log)":
        return ""
    cell = column.group(row) if isinstance(row, LayerGroup) else column.cell(row)
    if isinstance(row, LayerGroup) and column.title == "layer":
        cell = row.label
    return cell.plain if isinstance(cell, Text) else str(cell)


def _elided(gap: Elided) -> str:
    return f"... {gap.count} more"


def block_table(report: Report, blocks: BlockTable, compact: bool = False) -> Table:
    """One row per block of a stack: the backward signal (grad rms) of each role, the worst dead/saturated
    fraction (when the stack has such layers) and the findings."""
    roles = [r for r in blocks.roles if r.weight or not compact]
    table = Table(title=f"{blocks.stack + '.' if blocks.stack else ''}* ({blocks.blocks} blocks): grad rms per role",
                  title_justify="left", pad_edge=False,
                  box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD)
    table.add_column("block", justify="right", no_wrap=True)
    for role in roles:
        table.add_column(role.name, justify="right", no_wrap=True)
    if blocks.dead:
        table.add_column("dead", justify="right", no_wrap=True)
    if blocks.saturation:
        table.add_column("sat", justify="right", no_wrap=True)
    table.add_column("findings", justify="left", overflow="fold")
    for row in blocks.rows:
        if isinstance(row, Elided):
            table.add_row(Text(_elided(row), "dim"))
            continue
        cells: list[RenderableType] = [row.index]
        cells += [num(row.layers[r.name].grad.output_rms) if r.name in row.layers else "" for r in roles]
        if blocks.dead:
            cells.append(pct(row.worst(_DEAD)))
        if blocks.saturation:
            cells.append(pct(row.worst(_SAT)))
        cells.append(Text(finding_count(row.findings), SEVERITY_STYLE.get(row.severity or "", "")))
        table.add_row(*cells)
    return table


def findings_table(report: Report) -> Table:
    table = Table(title="Findings", title_justify="left")
    table.add_column("severity", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("layer", overflow="fold")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("threshold", justify="right", no_wrap=True)
    stepped = any(f.step is not None for f in report.findings)
    if stepped:  # findings over training: the step they name
        table.add_column("step", justify="right", no_wrap=True)
    table.add_column("what it means / what to do", overflow="fold", ratio=1)
    fail_on = set(report.run.fail_on)
    for group in group_findings(report.findings, names(report)):
        f = group.first
        marker = " (fails)" if fails(f, fail_on) else ""
        step = [num(f.step)] if stepped else []
        table.add_row(
            Text(f.severity + marker, SEVERITY_STYLE[f.severity]), f.kind, group.layers(), group.value(), num(f.threshold),
            *step, Text.assemble(group.message(), "\n", ("fix: " + f.hint, "dim")),
        )
    return table


def findings_list(report: Report) -> RenderableType:
    """Findings for narrow consoles: one heading line each, the explanation and fix indented below."""
    fail_on = set(report.run.fail_on)
    text = Text("Findings", style="italic")
    for group in group_findings(report.findings, names(report)):
        f = group.first
        text.append("\n")
        text.append(f.severity + (" (fails)" if fails(f, fail_on) else ""), SEVERITY_STYLE[f.severity])
        text.append(f"  {f.kind}  {group.layers()}{tr.step_note(f)}  value {group.value()} (threshold {num(f.threshold)})")
        text.append(f"\n    {group.message()}")
        text.append(f"\n    fix: {f.hint}", style="dim")
    return text


_INIT_COLUMNS = [  # (title, compact title or None, numeric)
    ("layer", "layer", False), ("fan_in", "in", True), ("fan_out", "out", True), ("followed by", "then", False),
    ("scheme", "scheme", False), ("gain", None, True), ("current std", "std now", True),
    ("now looks like", None, False), ("recommended std", "std rec", True), ("ratio", "ratio", True),
    ("advice", "advice", False), ("apply", None, False),
]


def init_table(report: Report, compact: bool = False, rows: Layout | None = None) -> Table:
    """Init advice per weight layer (one row per role of a folded stack). Advice no finding backs (a network
    with normalisation, no init_mismatch or depth trend on the layer: ``InitAdvice.informational``) is dimmed
    and marked ``info``: it says what the textbook scheme would be, not that the init is wrong."""
    rows = rows or layout(report)
    table = Table(title="Init variance (per weight layer)", title_justify="left",
                  box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD, caption_justify="left")
    marked = any(isinstance(r, InitRow) and r.status for r in rows.init)
    shown = [(title, short) for title, short, _ in _INIT_COLUMNS
             if (short or not compact) and (title != "advice" or marked)]
    numeric = {title for title, _, is_number in _INIT_COLUMNS if is_number}
    for title, short in shown:
        table.add_column(short if compact else title, justify="right" if title in numeric else "left", overflow="fold",
                         no_wrap=title in numeric)
    captions = []
    for row in rows.init:
        if isinstance(row, Elided):
            table.add_row(Text(_elided(row), "dim"))
            continue
        i, info = row.advice, row.informational
        cells = {
            "layer": row.label, "fan_in": str(i.fan_in), "fan_out": str(i.fan_out),
            "followed by": i.activation_after + ("*" if compact and i.normalized_after else
                                                 " (after norm)" if i.normalized_after else ""),
            "scheme": i.scheme, "gain": num(i.gain), "current std": row.span(lambda a: a.current_std),
            "now looks like": i.current_scheme, "recommended std": row.span(lambda a: a.recommended_std),
            "ratio": Text(row.span(lambda a: a.ratio, 2), "yellow" if row.flagged else ""),
            "advice": Text(row.status, "yellow" if row.flagged else ""),
            "apply": Text(i.call, "dim"),
        }
        table.add_row(*(cells[title] for title, _ in shown), style="dim" if info else "")
    if compact and any(isinstance(r, InitRow) and r.advice.normalized_after for r in rows.init):
        captions.append("* after a normalisation layer")
    if any(isinstance(r, InitRow) and r.informational for r in rows.init):
        captions.append(INFO_NOTE)
    table.caption = "\n".join(captions) or None
    return table


INFO_NOTE = ("info: advice no finding backs -- the model has normalisation layers, which reset the scale, and no "
             "init_mismatch or depth trend names the layer; the textbook scheme, not a fix (README \"Verdicts\")")


def time_table(report: Report) -> Table:
    """Recurrent layers: the backward signal from the last step at the first, middle and last steps."""
    table = Table(title="Through time (recurrent layers: how much of step t's input reaches the last step)",
                  title_justify="left", box=box.SIMPLE_HEAD)
    for title in ("layer", "steps", "first step", "middle", "last step", "first/last", "per step"):
        table.add_column(title, justify="left" if title == "layer" else "right")
    flagged = {f.layer for f in report.findings if f.kind in ("vanishing_gradient", "exploding_gradient")}
    for layer in report.layers:
        t = layer.time
        if t is None:
            continue
        per_step = t.ratio ** (1 / (t.steps - 1)) if t.steps > 1 and t.ratio > 0 else float("nan")
        table.add_row(Text(layer.name, "bold red" if layer.name in flagged else ""), str(t.steps), num(t.grad_rms[0]),
                      num(t.grad_rms[t.steps // 2]), num(t.grad_rms[-1]), num(t.ratio), num(per_step))
    return table


def training_parts(report: Report, compact: bool = False) -> list[RenderableType]:
    """The training run: what was run, the per-step summary, the per-layer table, the advice."""
    assert report.training is not None
    return [training_header(report), step_table(report), training_layer_table(report, compact), training_advice(report)]


def training_header(report: Report) -> Text:
    assert report.training is not None
    text = Text("Training: ", style="bold")
    text.append(tr.header_line(report.training), style="dim")
    return text


def step_table(report: Report) -> Table:
    """Loss, global gradient norm and the worst layer per logged step (elided to tr.SUMMARY_ROWS)."""
    summary = tr.step_summary(report)
    table = Table(title="Training steps", title_justify="left", box=box.SIMPLE_HEAD,
                  caption=summary.caption() or None, caption_justify="left")
    for title in ("step", "loss", "grad norm", "worst layer (grad rms vs step 0)", "findings"):
        table.add_column(title, justify="left" if title[0] in "wf" else "right", overflow="fold")
    for row in summary.rows:
        table.add_row(str(row.step), row.loss, row.grad_norm, row.worst, Text(row.marks, "bold red"),
                      style="red" if row.bad else "")
    return table


def training_layer_table(report: Report, compact: bool = False) -> Table:
    """Per-layer metrics at the first and the last logged step, side by side."""
    assert report.training is not None
    layers = tr.layer_table(report.training)
    table = Table(title="Training: layers at the first and last logged steps", title_justify="left",
                  box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
                  caption=tr.DYING_NOTE if report.training.dying else None, caption_justify="left")
    for i, title in enumerate(layers.headers):
        table.add_column(title, justify="left" if i < 2 else "right", overflow="fold")
    for row in layers.rows:
        table.add_row(*(Text(c.text, "bold red" if c.bad else "") for c in row))
    return table


def training_advice(report: Report) -> Text:
    assert report.training is not None
    text = Text("Training advice", style="italic")
    for label, line in tr.advice_lines(report.training):
        text.append(f"\n{label}: ", style="bold")
        text.append(line)
    return text


def verdict(report: Report) -> Text:
    s = report.summary
    text = Text(s.verdict, STATUS_STYLE[s.status])
    shown = names(report)
    if s.first_bad_layer:
        text.append(f"\nfirst bad layer: {shown.get(s.first_bad_layer, s.first_bad_layer)}", style="dim")
    if s.first_nonfinite_layer:
        text.append(f" · first non-finite layer: {shown.get(s.first_nonfinite_layer, s.first_nonfinite_layer)}", style="dim")
    text.append(f"\nexit code {s.exit_code}", style="dim")
    return text
