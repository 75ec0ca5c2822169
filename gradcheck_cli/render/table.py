"""Rich tables for the terminal: layers (with a log-scale backward-signal bar), findings, init, verdict."""

from __future__ import annotations

import math

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gradcheck_cli.advice import init_call
from gradcheck_cli.render.numbers import log_bar, num, pct
from gradcheck_cli.report import Finding, Report

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
STATUS_STYLE = {"fail": "bold red", "warn": "bold yellow", "ok": "bold green"}


def render_rich(report: Report) -> RenderableType:
    parts: list[RenderableType] = [header(report), layer_table(report)]
    if report.findings:
        parts.append(findings_table(report))
    if any(layer.init for layer in report.layers):
        parts.append(init_table(report))
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


def layer_table(report: Report) -> Table:
    table = Table(title="Layers (forward order)", title_justify="left", expand=False, pad_edge=False)
    for column, justify in [
        ("#", "right"), ("layer", "left"), ("kind", "left"), ("act mean", "right"), ("act std", "right"),
        ("|m|/s", "right"), ("zeros", "right"), ("dead", "right"), ("sat", "right"),
        ("grad rms", "right"), ("backward signal (log)", "left"), ("|dW|", "right"), ("|dW|/|W|", "right"),
    ]:
        table.add_column(column, justify=justify, no_wrap=column != "layer", overflow="fold")
    values = [l.grad.output_rms for l in report.layers if l.grad.output_rms and math.isfinite(l.grad.output_rms)]
    low, high = (min(values), max(values)) if values else (1.0, 1.0)
    flagged = {f.layer: f.severity for f in report.findings}
    for layer in report.layers:
        a, g = layer.activation, layer.grad
        style = SEVERITY_STYLE.get(flagged.get(layer.name, ""), "")
        if not layer.observed:
            table.add_row(str(layer.index), layer.name, layer.kind, *["-"] * 6, "-", Text("not observed", "dim"),
                          num(g.weight_norm), num(g.weight_ratio), style="dim")
            continue
        table.add_row(
            str(layer.index), Text(layer.name, style), layer.kind,
            num(a.mean) if a else "-", num(a.std) if a else "-", num(a.centring, 2) if a else "-",
            pct(a.zero_fraction) if a else "-", pct(a.dead_ratio) if a else "-", pct(a.saturation) if a else "-",
            num(g.output_rms), Text(log_bar(g.output_rms, low, high), "red" if style == "bold red" else "green"),
            num(g.weight_norm), num(g.weight_ratio),
        )
    return table


GROUP_AT = 4
"""Findings of one kind on this many layers or more share a row (the JSON keeps every one)."""


def findings_table(report: Report) -> Table:
    table = Table(title="Findings", title_justify="left")
    table.add_column("severity", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("layer", overflow="fold")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("threshold", justify="right", no_wrap=True)
    table.add_column("what it means / what to do", overflow="fold", ratio=1)
    fail_on = set(report.run.fail_on)
    for group in _grouped(report.findings):
        f = group[0]
        marker = " (fails)" if f.kind in fail_on else ""
        if len(group) == 1:
            layer, value, message = f.layer, num(f.value), f.message
        else:
            names = [g.layer for g in group]
            shown = ", ".join(names[:3] + ["...", names[-1]]) if len(names) > 5 else ", ".join(names)
            values = [g.value for g in group]
            layer = f"{len(group)} layers: {shown}"
            value = f"{num(min(values))}..{num(max(values))}"
            message = f"{f.message} (and {len(group) - 1} more layers like it)"
        table.add_row(
            Text(f.severity + marker, SEVERITY_STYLE[f.severity]), f.kind, layer, value, num(f.threshold),
            Text.assemble(message, "\n", ("fix: " + f.hint, "dim")),
        )
    return table


def _grouped(findings: list[Finding]) -> list[list[Finding]]:
    """Consecutive runs are not required: all findings of a (kind, severity) group once frequent enough."""
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


def init_table(report: Report) -> Table:
    table = Table(title="Init variance (per weight layer)", title_justify="left")
    for column in ("layer", "fan_in", "fan_out", "followed by", "scheme", "gain", "current std", "now looks like",
                   "recommended std", "ratio", "apply"):
        table.add_column(column, justify="right" if column in ("fan_in", "fan_out", "gain", "current std", "recommended std", "ratio") else "left",
                         overflow="fold")
    flagged = {f.layer for f in report.findings if f.kind == "init_mismatch"}
    for layer in report.layers:
        i = layer.init
        if i is None:
            continue
        followed = i.activation_after + (" (after norm)" if i.normalized_after else "")
        ratio = Text(num(i.ratio, 2), "yellow" if layer.name in flagged else "")
        table.add_row(layer.name, str(i.fan_in), str(i.fan_out), followed, i.scheme, num(i.gain), num(i.current_std),
                      i.current_scheme, num(i.recommended_std), ratio, Text(init_call(i), "dim"))
    return table


def verdict(report: Report) -> Text:
    s = report.summary
    text = Text(s.verdict, STATUS_STYLE[s.status])
    if s.first_bad_layer:
        text.append(f"\nfirst bad layer: {s.first_bad_layer}", style="dim")
    if s.first_nonfinite_layer:
        text.append(f" · first non-finite layer: {s.first_nonfinite_layer}", style="dim")
    text.append(f"\nexit code {s.exit_code}", style="dim")
    return text
