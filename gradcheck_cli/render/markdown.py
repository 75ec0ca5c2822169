"""Markdown for pull-request comments and ``$GITHUB_STEP_SUMMARY``.

Everything that comes from the model (layer names, messages quoting them) is escaped: HTML
special characters become entities and Markdown's table and emphasis characters are
backslash-escaped, so a layer called ``<script>`` or ``a|b`` renders as text.
"""

from __future__ import annotations

import html

from gradcheck_cli.diagnose.registry import fails
from gradcheck_cli.render.common import group_findings
from gradcheck_cli.render.numbers import num, pct
from gradcheck_cli.report.model import Report

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


def render_markdown(report: Report) -> str:
    s, m, r = report.summary, report.model, report.run
    out = [
        f"### {STATUS_ICON[s.status]} gradcheck: {escape(s.verdict)}",
        "",
        f"{code(m.source)} ({escape(m.format)}, {m.parameters:,} parameters) · device {escape(r.device)} · "
        f"loss {escape(r.loss)} · {r.batches} batch(es) · seed {r.seed} · exit code {s.exit_code}",
    ]
    out += [f"> note: {escape(note)}" for note in report.notes]
    if report.findings:
        fail_on = set(r.fail_on)
        rows = []
        for group in group_findings(report.findings):
            f = group.first
            rows.append([f.severity + (" (fails)" if fails(f, fail_on) else ""), code(f.kind), escape(group.layers()),
                         group.value(), num(f.threshold), escape(group.message()) + "<br>*fix:* " + escape(f.hint)])
        out += ["", "#### Findings", ""] + _table(["severity", "kind", "layer", "value", "threshold", "detail"], rows, "lllrrl")
    rows = [
        [str(l.index), escape(l.name), escape(l.kind),
         num(l.activation.std) if l.activation else "-", pct(l.activation.dead_ratio) if l.activation else "-",
         num(l.grad.output_rms), num(l.grad.weight_ratio)]
        for l in report.layers
    ]
    out += ["", "<details><summary>Layers (forward order)</summary>", ""]
    out += _table(["#", "layer", "kind", "act std", "dead", "grad rms", "\\|dW\\|/\\|W\\|"], rows, "rllrrrr")
    out += ["", "</details>"]
    init_rows = [
        [escape(l.name), str(l.init.fan_in), str(l.init.fan_out), escape(l.init.activation_after), l.init.scheme,
         num(l.init.current_std), num(l.init.recommended_std), num(l.init.ratio, 2), code(l.init.call) if l.init.call else "-"]
        for l in report.layers if l.init
    ]
    if init_rows:
        out += ["", "<details><summary>Init variance</summary>", ""]
        out += _table(["layer", "fan_in", "fan_out", "followed by", "scheme", "current std", "recommended std", "ratio",
                       "apply"], init_rows, "lrrllrrrl")
        out += ["", "</details>"]
    time_rows = [
        [escape(l.name), str(l.time.steps), num(l.time.grad_rms[0]), num(l.time.grad_rms[-1]), num(l.time.ratio)]
        for l in report.layers if l.time
    ]
    if time_rows:
        out += ["", "<details><summary>Through time (recurrent layers)</summary>", ""]
        out += _table(["layer", "steps", "first step", "last step", "first/last"], time_rows, "lrrrr")
        out += ["", "</details>"]
    return "\n".join(out) + "\n"
