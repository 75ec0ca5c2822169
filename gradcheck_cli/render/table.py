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
from gradcheck_cli.render.numbers import log_bar, num, pct
from gradcheck_cli.report.model import ActivationStats, LayerReport, Report

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
STATUS_STYLE = {"fail": "bold red", "warn": "bold yellow", "ok": "bold green"}


COMPACT_BELOW = 150
"""Consoles narrower than this get the compact layer table (CI logs outside a terminal get 160)."""


def render_rich(report: Report, width: int | None = None) -> RenderableType:
    """All sections; ``width`` (the console's) picks the full or the compact layer table."""
    compact = width is not None and width < COMPACT_BELOW
    parts: list[RenderableType] = [header(report), layer_table(report, compact=compact)]
    if report.findings:
        parts.append(findings_list(report) if compact else findings_table(report))
    if any(layer.init for layer in report.layers):
        parts.append(init_table(report, compact=compact))
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
    for note in report.notes:
        text.append(f"\nnote: {note}", style="dim")
    return text


@dataclass(frozen=True)
class _Column:
    title: str
    cell: Callable[[LayerReport], RenderableType]
    justify: str = "right"
    short: str | None = None
    """Title in the compact table; None: not shown there."""


def _act(fn: Callable[[ActivationStats], str]) -> Callable[[LayerReport], str]:
    return lambda layer: fn(layer.activation) if layer.activation else "-"


def _columns(bar: Callable[[LayerReport], RenderableType]) -> list[_Column]:
    return [
        _Column("#", lambda l: str(l.index), short="#"),
        _Column("layer", lambda l: l.name, "left", short="layer"),
        _Column("kind", lambda l: l.kind, "left", short="kind"),
        _Column("act mean", _act(lambda a: num(a.mean))),
        _Column("act std", _act(lambda a: num(a.std)), short="std"),
        _Column("|m|/s", _act(lambda a: num(a.centring, 2))),
        _Column("zeros", _act(lambda a: pct(a.zero_fraction))),
        _Column("dead", _act(lambda a: pct(a.dead_ratio)), short="dead"),
        _Column("sat", _act(lambda a: pct(a.saturation))),
        _Column("grad rms", lambda l: num(l.grad.output_rms), short="grad"),
        _Column("backward signal (log)", bar, "left", short="log grad"),
        _Column("|dW|", lambda l: num(l.grad.weight_norm)),
        _Column("|dW|/|W|", lambda l: num(l.grad.weight_ratio)),
    ]


def layer_table(report: Report, compact: bool = False) -> Table:
    """Every layer in forward order; ``compact`` keeps the columns that fit 80 characters."""
    values = [l.grad.output_rms for l in report.layers if l.grad.output_rms and math.isfinite(l.grad.output_rms)]
    low, high = (min(values), max(values)) if values else (1.0, 1.0)
    flagged = {f.layer: f.severity for f in report.findings}

    def bar(layer: LayerReport) -> RenderableType:
        if not layer.observed:
            return Text("not observed", "dim")
        colour = "red" if flagged.get(layer.name) == "error" else "green"
        return Text(log_bar(layer.grad.output_rms, low, high, width=8 if compact else 16), colour)

    columns = [c for c in _columns(bar) if c.short or not compact]
    table = Table(title="Layers (forward order)", title_justify="left", pad_edge=False,
                  box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD)
    for column in columns:
        table.add_column(column.short if compact else column.title, justify=column.justify,  # type: ignore[arg-type]
                         no_wrap=column.title != "layer", overflow="fold")
    name_at = [c.title for c in columns].index("layer")
    for layer in report.layers:
        cells = [column.cell(layer) for column in columns]
        cells[name_at] = Text(layer.name, SEVERITY_STYLE.get(flagged.get(layer.name, ""), ""))
        table.add_row(*cells, style="dim" if not layer.observed else "")
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
    for group in group_findings(report.findings):
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
    for group in group_findings(report.findings):
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
    ("apply", None, False),
]


def init_table(report: Report, compact: bool = False) -> Table:
    table = Table(title="Init variance (per weight layer)", title_justify="left",
                  box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD)
    shown = [(title, short) for title, short, _ in _INIT_COLUMNS if short or not compact]
    numeric = {title for title, _, is_number in _INIT_COLUMNS if is_number}
    for title, short in shown:
        table.add_column(short if compact else title, justify="right" if title in numeric else "left", overflow="fold")
    flagged = {f.layer for f in report.findings if f.kind == "init_mismatch"}
    for layer in report.layers:
        i = layer.init
        if i is None:
            continue
        cells = {
            "layer": layer.name, "fan_in": str(i.fan_in), "fan_out": str(i.fan_out),
            "followed by": i.activation_after + ("*" if compact and i.normalized_after else
                                                 " (after norm)" if i.normalized_after else ""),
            "scheme": i.scheme, "gain": num(i.gain), "current std": num(i.current_std),
            "now looks like": i.current_scheme, "recommended std": num(i.recommended_std),
            "ratio": Text(num(i.ratio, 2), "yellow" if layer.name in flagged else ""),
            "apply": Text(i.call, "dim"),
        }
        table.add_row(*(cells[title] for title, _ in shown))
    if compact and any(layer.init and layer.init.normalized_after for layer in report.layers):
        table.caption = "* after a normalisation layer"
    return table


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
    if s.first_bad_layer:
        text.append(f"\nfirst bad layer: {s.first_bad_layer}", style="dim")
    if s.first_nonfinite_layer:
        text.append(f" · first non-finite layer: {s.first_nonfinite_layer}", style="dim")
    text.append(f"\nexit code {s.exit_code}", style="dim")
    return text
