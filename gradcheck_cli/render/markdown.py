"""Markdown for pull-request comments and ``$GITHUB_STEP_SUMMARY``.

Everything that comes from the model (layer names, messages quoting them) is escaped: HTML
special characters become entities and Markdown's table and emphasis characters are
backslash-escaped, so a layer called ``<script>`` or ``a|b`` renders as text.
"""

from __future__ import annotations

import html

from gradcheck_cli.diagnose.registry import fails
from gradcheck_cli.render import training as tr
from gradcheck_cli.render.common import group_findings
from gradcheck_cli.render.grouping import BlockTable, Elided, LayerGroup, Layout, View, finding_count, label, layout, names
from gradcheck_cli.render.numbers import num, pct
from gradcheck_cli.report.model import LayerReport, Report

_MARKDOWN_SPECIAL = "\\`*_{}[]()#+!|~>"
STATUS_ICON = {"ok": "✅", "warn": "⚠️", "fail": "❌"}


def escape(text: str) -> str:
    """Inline-safe Markdown: HTML entities first, then backslash before Markdown's specials."""
    text = html.escape(text, quote=False)
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL and ch != ">" else ch for ch in text).replace("\n", " ")


def code(text: str) -> str:
    """A code span: literal inside, so only backticks, pipes (tables) and newlines need care."""
    return "`" + text.replace("`", "'").replace("|", "\\|").replace("\n", " ") + "`"


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(":--" if a == "l" else "--:" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_markdown(report: Report, view: View | None = None) -> str:
    s, m, r = report.summary, report.model, report.run
    rows_of = layout(report, view)
    out = [
        f"### {STATUS_ICON[s.status]} gradcheck: {escape(s.verdict)}",
        "",
        f"{code(m.source)} ({escape(m.format)}, {m.parameters:,} parameters) · device {escape(r.device)} · "
        f"loss {escape(r.loss)} · {r.batches} batch(es) · seed {r.seed} · exit code {s.exit_code}",
    ]
    out += ["", f"config: {code(r.config)}"] if r.config else []
    out += [f"> note: {escape(note)}" for note in report.notes]
    if report.findings:
        fail_on = set(r.fail_on)
        stepped = any(f.step is not None for f in report.findings)  # findings over training: the step they name
        rows = []
        for group in group_findings(report.findings, names(report)):
            f = group.first
            rows.append([f.severity + (" (fails)" if fails(f, fail_on) else ""), code(f.kind), escape(group.layers()),
                         group.value(), num(f.threshold), *([num(f.step)] if stepped else []),
                         escape(group.message()) + "<br>*fix:* " + escape(f.hint)])
        header = ["severity", "kind", "layer", "value", "threshold", *(["step"] if stepped else []), "detail"]
        out += ["", "#### Findings", ""] + _table(header, rows, "lllrr" + ("r" if stepped else "") + "l")
    out += ["", "<details><summary>Layers (forward order)</summary>", ""]
    out += _table(["#", "layer", "kind", "act std", "dead", "grad rms", "\\|dW\\|/\\|W\\| rel"],
                  [_layer_row(row) for row in rows_of.rows], "rllrrrr")
    if rows_of.note:
        out += ["", f"*{escape(rows_of.note)}*"]
    out += ["", "</details>"]
    for blocks in rows_of.blocks:
        out += ["", f"<details><summary>Blocks of {escape(blocks.stack or 'the model')}: backward signal (grad rms) "
                    f"per role</summary>", ""]
        out += _block_table(blocks) + ["", "</details>"]
    out += _init_section(rows_of)
    time_rows = [
        [escape(l.name), str(l.time.steps), num(l.time.grad_rms[0]), num(l.time.grad_rms[-1]), num(l.time.ratio)]
        for l in report.layers if l.time
    ]
    if time_rows:
        out += ["", "<details><summary>Through time (recurrent layers)</summary>", ""]
        out += _table(["layer", "steps", "first step", "last step", "first/last"], time_rows, "lrrrr")
        out += ["", "</details>"]
    if report.training is not None:
        out += training_section(report)
    return "\n".join(out) + "\n"


def _layer_row(row: LayerReport | LayerGroup | Elided) -> list[str]:
    if isinstance(row, Elided):
        return ["", f"*... {row.count} more (--max-rows)*", "", "", "", "", ""]
    if isinstance(row, LayerGroup):
        return [row.indices, escape(row.label), escape(row.kind), row.span(lambda l: l.activation.std if l.activation else None),
                pct(row.worst(lambda l: l.activation.dead_ratio if l.activation else None)),
                row.span(lambda l: l.grad.output_rms), row.span(lambda l: l.grad.relative_ratio)]
    a = row.activation
    return [str(row.index), escape(label(row)), escape(row.kind), num(a.std) if a else "-", pct(a.dead_ratio) if a else "-",
            num(row.grad.output_rms), num(row.grad.relative_ratio)]


def _block_table(blocks: BlockTable) -> list[str]:
    header = ["block", *(escape(r.name) for r in blocks.roles), "findings"]
    rows = []
    for row in blocks.rows:
        if isinstance(row, Elided):
            rows.append([f"*... {row.count} more (--max-rows)*"] + [""] * (len(header) - 1))
            continue
        rows.append([row.index, *(num(row.layers[r.name].grad.output_rms) if r.name in row.layers else "" for r in blocks.roles),
                     finding_count(row.findings)])
    return _table(header, rows, "r" + "r" * len(blocks.roles) + "l")


def _init_section(rows_of: Layout) -> list[str]:
    """Init advice; advice no finding backs is marked ``info`` (with the note saying why) rather than left to apply."""
    from gradcheck_cli.render.table import INFO_NOTE

    rows = []
    for row in rows_of.init:
        if isinstance(row, Elided):
            rows.append([f"*... {row.count} more (--max-rows)*"] + [""] * 9)
            continue
        i = row.advice
        rows.append([escape(row.label), str(i.fan_in), str(i.fan_out), escape(i.activation_after), i.scheme,
                     row.span(lambda a: a.current_std), row.span(lambda a: a.recommended_std), row.span(lambda a: a.ratio, 2),
                     row.status, code(i.call) if i.call else "-"])
    if not rows:
        return []
    out = ["", "<details><summary>Init variance</summary>", ""]
    out += _table(["layer", "fan_in", "fan_out", "followed by", "scheme", "current std", "recommended std", "ratio",
                   "advice", "apply"], rows, "lrrllrrrll")
    if any(r == "info" for *_, r, _ in rows):
        out += ["", f"*{escape(INFO_NOTE)}*"]
    return out + ["", "</details>"]


def training_section(report: Report) -> list[str]:
    """Header line, per-step summary, per-layer table at the first and last logged steps, advice."""
    t = report.training
    assert t is not None
    summary = tr.step_summary(report)
    out = ["", "#### Training", "", escape(tr.header_line(t)), ""]
    rows = [[_bad(str(row.step), row.bad), row.loss, row.grad_norm, escape(row.worst), code(row.marks) if row.marks else ""]
            for row in summary.rows]
    out += _table(["step", "loss", "grad norm", "worst layer (grad rms vs step 0)", "findings"], rows, "rrrll")
    if caption := summary.caption():
        out += ["", f"*{escape(caption)}*"]
    layers = tr.layer_table(t)
    cells = [[_bad(escape(c.text), c.bad) for c in row] for row in layers.rows]
    out += ["", "<details><summary>Training: layers at the first and last logged steps</summary>", ""]
    out += _table([escape(h) for h in layers.headers], cells, "ll" + "r" * (len(layers.headers) - 2))
    if t.dying:
        out += ["", f"*{escape(tr.DYING_NOTE)}*"]
    out += ["", "</details>", ""]
    out += [f"- **{escape(label)}**: {escape(line)}" for label, line in tr.advice_lines(t)]
    return out


def _bad(text: str, bad: bool) -> str:
    """Non-finite values in bold, so they stand out in a long column."""
    return f"**{text}**" if bad else text
