"""A self-contained HTML report: one file, inline CSS, no scripts, no network.

Every string that comes from the model or the user (layer names, file names, messages that
quote them) goes through :func:`html.escape`; the page carries no JavaScript at all, so a layer
called ``<script>`` is text. The log-scale backward-signal bars are plain CSS widths; the Plots
section holds inline SVG figures from :mod:`gradcheck_cli.render.plots` (text escaped by
matplotlib's XML writer, no scripts, no namespace URLs) when matplotlib is installed, and says how
to get them when it is not: matplotlib is an optional extra, and the tables carry every number.
"""

from __future__ import annotations

import html
import math

from gradcheck_cli.render import plots
from gradcheck_cli.render import training as tr
from gradcheck_cli.render.common import FindingGroup, group_findings
from gradcheck_cli.render.grouping import Elided, InitRow, LayerGroup, Layout, View, finding_count, label, layout, names
from gradcheck_cli.render.numbers import centring_shown, mean_shown, num, pct
from gradcheck_cli.report.model import Report

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1b1f24;max-width:1200px}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #d0d7de;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f6f8fa}td.l,th.l{text-align:left}
.fail{color:#b42318}.warn{color:#b54708}.ok{color:#067647}.error{color:#b42318;font-weight:600}
.warning{color:#b54708}.info{color:#175cd3}.dim{color:#6e7781}
.bar{display:inline-block;height:.8em;background:#2da44e;vertical-align:middle}
tr.flag td.name{color:#b42318;font-weight:600}
tr.info-advice td{color:#6e7781}tr:target{background:#fff8c5}
figure.plot{margin:1em 0}
svg.gc-plot{display:block;max-width:100%;height:auto}
"""
_TRAINING_CSS = "h3{font-size:1em}td.bad{color:#b42318;font-weight:600}\n"
"""Added only to pages of training reports, so other pages stay byte for byte as they were."""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _bar(value: float | None, low: float, high: float) -> str:
    if value is None or not math.isfinite(value) or value <= 0:
        return ""
    span = math.log10(high) - math.log10(low)
    fraction = 1.0 if span <= 0 else (math.log10(value) - math.log10(low)) / span
    return f'<span class="bar" style="width:{max(2, round(fraction * 160))}px"></span>'


def _table(headers: list[str], rows: list[list[str]], left: set[int], bad: list[list[bool]] | None = None,
           ids: list[str] | None = None, classes: list[str] | None = None) -> str:
    """``bad`` (optional, one flag per cell): cells to mark as non-finite (red); ``ids``/``classes``: per row (the
    anchors findings link to; ``info`` rows)."""
    head = "".join(f'<th class="{"l" if i in left else ""}">{_e(h)}</th>' for i, h in enumerate(headers))

    def cls(r: int, i: int) -> str:
        return " ".join(c for c in ("l" if i in left else "", "bad" if bad and bad[r][i] else "") if c)

    def row_open(r: int) -> str:
        attrs = (f' id="{_e(ids[r])}"' if ids and ids[r] else "") + (f' class="{_e(classes[r])}"' if classes and classes[r] else "")
        return f"<tr{attrs}>"

    body = "".join(
        row_open(r) + "".join(f'<td class="{cls(r, i)}">{cell}</td>' for i, cell in enumerate(row)) + "</tr>"
        for r, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _plots(report: Report) -> list[str]:
    """The Plots section: inline SVG figures, or the one line that says what to install."""
    if not plots.plots_available():
        return ["<h2>Plots</h2>", f'<p class="dim plots-missing">{_e(plots.INSTALL_HINT)}</p>']
    # No figcaption: each figure draws its own title (a standalone --plot file needs it too).
    figures = [f'<figure class="plot">{svg}</figure>' for _, svg in plots.svg_figures(report)]
    return ["<h2>Plots</h2>", *figures]


def _blocks(rows_of: Layout) -> list[str]:
    parts = []
    for t in rows_of.blocks:
        rows, ids = [], []
        for row in t.rows:
            if isinstance(row, Elided):
                rows.append([f'<span class="dim">... {row.count} more (--max-rows)</span>'] + [""] * (len(t.roles) + 1))
                ids.append("")
                continue
            rows.append([_e(row.index), *(_e(num(row.layers[r.name].grad.output_rms)) if r.name in row.layers else ""
                                           for r in t.roles),
                         f'<span class="{_e(row.severity or "")}">{_e(finding_count(row.findings))}</span>'])
            ids.append(row.anchor)
        parts += [f"<h2>Blocks of {_e(t.stack or 'the model')}: backward signal (grad rms) per role</h2>",
                  _table(["block", *(r.name for r in t.roles), "findings"], rows, {len(t.roles) + 1}, ids=ids)]
    return parts


def _init(rows_of: Layout) -> list[str]:
    """Init advice; advice no finding backs is marked ``info`` and dimmed, with the note saying why."""
    from gradcheck_cli.render.table import INFO_NOTE

    rows, classes = [], []
    for row in rows_of.init:
        if isinstance(row, Elided):
            rows.append([f'<span class="dim">... {row.count} more (--max-rows)</span>'] + [""] * 10)
            classes.append("")
            continue
        i = row.advice
        rows.append([_e(row.label), str(i.fan_in), str(i.fan_out), _e(i.activation_after), _e(i.scheme),
                     _e(row.span(lambda a: a.current_std)), _e(i.current_scheme), _e(row.span(lambda a: a.recommended_std)),
                     _e(row.span(lambda a: a.ratio, 2)), _e(row.status), f"<code>{_e(i.call)}</code>"])
        classes.append("info-advice" if row.informational else "")
    if not rows:
        return []
    parts = ["<h2>Init variance</h2>", _table(
        ["layer", "fan_in", "fan_out", "followed by", "scheme", "current std", "looks like", "recommended std", "ratio",
         "advice", "apply"], rows, {0, 3, 4, 6, 9, 10}, classes=classes)]
    if any(isinstance(r, InitRow) and r.informational for r in rows_of.init):
        parts.append(f'<p class="dim">{_e(INFO_NOTE)}</p>')
    return parts


def _training(report: Report) -> list[str]:
    """The training run: header line, per-step summary, per-layer table, advice (plots sit in Plots)."""
    t = report.training
    assert t is not None
    summary = tr.step_summary(report)
    rows = [[_e(row.step), _e(row.loss), _e(row.grad_norm), _e(row.worst), _e(row.marks)] for row in summary.rows]
    steps = _table(["step", "loss", "grad norm", "worst layer (grad rms vs step 0)", "findings"], rows, {3, 4},
                   [[row.bad] * 5 for row in summary.rows])
    parts = ["<h2>Training</h2>", f'<p class="dim training-run">{_e(tr.header_line(t))}</p>', "<h3>Steps</h3>", steps]
    if caption := summary.caption():
        parts.append(f'<p class="dim">{_e(caption)}</p>')
    layers = tr.layer_table(t)
    parts += ["<h3>Layers at the first and last logged steps</h3>",
              _table(layers.headers, [[_e(c.text) for c in row] for row in layers.rows], {0, 1},
                     [[c.bad for c in row] for row in layers.rows])]
    if t.dying:
        parts.append(f'<p class="dim">{_e(tr.DYING_NOTE)}</p>')
    advice = "".join(f"<li><b>{_e(label)}</b>: {_e(line)}</li>" for label, line in tr.advice_lines(t))
    return parts + ["<h3>Advice</h3>", f'<ul class="training-advice">{advice}</ul>']


def _linked(group: FindingGroup, anchors: dict[str, str], shown: set[str]) -> str:
    """The finding's layer(s), each a link to the row that shows it (when that row is on the page)."""
    def one(name: str, text: str) -> str:
        anchor = anchors.get(name)
        return f'<a href="#{_e(anchor)}">{_e(text)}</a>' if anchor in shown else _e(text)

    if len(group.findings) == 1:
        return one(group.first.layer, group.names[0])
    links = [one(f.layer, text) for f, text in zip(group.findings, group.names)]
    more = f", ... ({len(links)} in all)" if len(links) > 8 else ""
    return f"{len(links)} layers: " + ", ".join(links[:8]) + more


def _row_ids(rows_of: Layout) -> set[str]:
    ids = {row.anchor if isinstance(row, LayerGroup) else f"layer-{row.index}" for row in rows_of.rows
           if not isinstance(row, Elided)}
    return ids | {row.anchor for t in rows_of.blocks for row in t.rows if not isinstance(row, Elided)}


def render_html(report: Report, view: View | None = None) -> str:
    s, m, r = report.summary, report.model, report.run
    rows_of = layout(report, view)
    on_page = _row_ids(rows_of)
    parts = [
        f'<h1>gradcheck: <span class="{_e(s.status)}">{_e(s.verdict)}</span></h1>',
        (f'<p class="dim">{_e(m.source)} ({_e(m.format)}, {m.parameters:,} parameters) · device {_e(r.device)} · '
         f"mode {_e(r.mode)} · loss {_e(r.loss)} · {r.batches} batch(es) · seed {r.seed} · exit code {s.exit_code}</p>"),
    ]
    parts += [f'<p class="dim">config: {_e(r.config)}</p>'] if r.config else []
    parts += [f'<p class="dim">note: {_e(note)}</p>' for note in report.notes]
    if report.findings:
        stepped = any(f.step is not None for f in report.findings)  # findings over training: the step they name
        rows = []
        for group in group_findings(report.findings, names(report)):
            f = group.first
            rows.append([f'<span class="{_e(f.severity)}">{_e(f.severity)}</span>', _e(f.kind),
                         _linked(group, rows_of.anchors, on_page),
                         _e(group.value()), _e(num(f.threshold)), *([_e(num(f.step))] if stepped else []),
                         f'{_e(group.message())}<br><span class="dim">fix: {_e(f.hint)}</span>'])
        headers = ["severity", "kind", "layer", "value", "threshold", *(["step"] if stepped else []), "detail"]
        parts += ["<h2>Findings</h2>", _table(headers, rows, {0, 1, 2, len(headers) - 1})]
    parts += _plots(report)
    values = [l.grad.output_rms for l in report.layers if l.grad.output_rms and math.isfinite(l.grad.output_rms)]
    low, high = (min(values), max(values)) if values else (1.0, 1.0)
    flagged = {f.layer for f in report.findings if f.severity in ("error", "warning")}
    rows, ids = [], []
    for l in rows_of.rows:
        if isinstance(l, Elided):
            rows.append(["", f'<span class="dim">... {l.count} more rows (--max-rows)</span>'] + [""] * 11)
            ids.append("")
            continue
        if isinstance(l, LayerGroup):
            grads = l.values(lambda x: x.grad.output_rms)
            rows.append([
                _e(l.indices), f'<span class="{"error" if l.severity in ("error", "warning") else ""}">{_e(l.label)}</span>',
                _e(l.kind), "-", _e(l.span(lambda x: x.activation.std if x.activation else None)),
                _e(num(centring_shown(l.worst(lambda x: x.activation.centring if x.activation else None)), 2)), "-",
                _e(pct(l.worst(lambda x: x.activation.dead_ratio if x.activation else None))),
                _e(pct(l.worst(lambda x: x.activation.saturation if x.activation else None))),
                _e(l.span(lambda x: x.grad.output_rms)), _bar(max(grads), low, high) if grads else "", "-",
                _e(l.span(lambda x: x.grad.relative_ratio)),
            ])
            ids.append(l.anchor)
            continue
        a, g = l.activation, l.grad
        stats = ([num(mean_shown(a.mean, a.std)), num(a.std), num(centring_shown(a.centring), 2), pct(a.zero_fraction), pct(a.dead_ratio), pct(a.saturation)]
                 if a else ["-"] * 6)
        rows.append([
            str(l.index), f'<span class="{"error" if l.name in flagged else ""}">{_e(label(l))}</span>', _e(l.kind),
            *(_e(x) for x in stats),
            _e(num(g.output_rms)), _bar(g.output_rms, low, high) if l.observed else '<span class="dim">not observed</span>',
            _e(num(g.weight_norm)), _e(num(g.relative_ratio)),
        ])
        ids.append(f"layer-{l.index}")
    parts += ["<h2>Layers (forward order)</h2>", _table(
        ["#", "layer", "kind", "act mean", "act std", "|m|/s", "zeros", "dead", "sat", "grad rms",
         "backward signal (log)", "|dW|", "|dW|/|W| rel"], rows, {1, 2, 10}, ids=ids)]
    if rows_of.note:
        parts.append(f'<p class="dim">{_e(rows_of.note)}</p>')
    parts += _blocks(rows_of)
    parts += _init(rows_of)
    if report.training is not None:
        parts += _training(report)
    title = _e(f"gradcheck: {m.source}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_CSS}{_TRAINING_CSS if report.training else ''}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
