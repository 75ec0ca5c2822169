"""Figures of a report: gradient flow, forward signal, dead units and saturation.

matplotlib is optional (``pip install 'gradcheck[plots]'``), so it is imported inside the
functions: importing this module never needs it, and :func:`plots_available` tells callers
whether a figure can be drawn. Figures are built with ``matplotlib.figure.Figure`` and rendered by
``FigureCanvasAgg``; pyplot is never imported, so no global figure registry, no GUI backend and
no state leaks between reports or into a user's own plots.

Output is byte-identical for the same report: every figure is drawn inside one
``rc_context`` that starts from matplotlib's default style (a user's matplotlibrc does not leak
in), fixes ``svg.hashsalt`` (SVG ids are hashes, random without a salt) and drops the date and
version metadata from SVG and PNG files.

SVG text is written as ``<text>`` elements (``svg.fonttype="none"``), not glyph paths: the file is
several times smaller, names stay searchable and selectable in the HTML page, and the escaping of
layer names is checkable (matplotlib's XML writer turns ``<`` and ``&`` into entities). Layer
names come from the model, so they are also cleaned of control/format characters (invalid in
XML, or bidi overrides that could disguise a name), shortened, and drawn with ``parse_math=False``
(a ``$`` in a name is text, not mathtext).
"""

from __future__ import annotations

import html
import io
import math
import re
import unicodedata
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gradcheck_cli.report.model import LayerReport, Report
from gradcheck_cli.render.numbers import mean_shown

if TYPE_CHECKING:  # matplotlib is optional: only for type hints
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = ("svg", "png")
INSTALL_HINT = "plots need matplotlib: pip install 'gradcheck[plots]'"

_RC: dict[str, Any] = {
    "svg.hashsalt": "gradcheck",
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
_PNG_METADATA = {"Software": None}
_PNG_DPI = 100

_BLUE, _GREEN, _ORANGE, _GREY, _RED = "#175cd3", "#067647", "#b54708", "#6e7781", "#b42318"
_MAX_TICKS = 40
"""More layers than this get every k-th tick label, so labels never overlap into a black band."""
_MAX_LABEL = 32
_HEIGHT = 4.6
"""Inches: one figure's height (a training heat map grows with the layer count)."""


def plots_available() -> bool:
    """matplotlib importable? Checked on every call (a cached answer would outlive a test's
    monkeypatch or a later install), which is cheap once the module is loaded."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends import backend_agg  # noqa: F401
    except ImportError:
        return False
    return True


def render_plot(report: Report, fmt: str = "png") -> bytes:
    """The gradient-flow figure as a standalone SVG or PNG file (what ``--plot FILE`` writes); for a
    training report, one tall file with the training figures below it."""
    if fmt not in FORMATS:
        raise ValueError(f"plot format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if report.training is None:
        return _render(_gradient_flow, report, fmt)
    from gradcheck_cli.render import training_plots

    builds = [_gradient_flow] + [build for _, _, build in training_plots.FIGURES]
    heights = [_HEIGHT, _HEIGHT, training_plots.heat_map_height(report), _HEIGHT]

    def stacked(figure: Figure, report: Report) -> None:
        for sub, build in zip(figure.subfigures(len(builds), 1, height_ratios=heights), builds):
            build(sub, report)

    return _render(stacked, report, fmt, height=sum(heights))


def svg_figures(report: Report) -> list[tuple[str, str]]:
    """(title, inline ``<svg>`` text) for every figure, ready to paste into an HTML page."""
    return [(title, inline_svg(_render(build, report, "svg", height).decode("utf-8"), prefix, title))
            for prefix, title, build, height in _figures(report)]


def _figures(report: Report) -> list[tuple[str, str, Callable[[Figure, Report], None], float]]:
    """(id prefix, title, builder, height) of a report's figures: the training ones follow for ``--steps``."""
    figures = [(prefix, title, build, _HEIGHT) for prefix, title, build in _FIGURES
               if prefix != "dead-saturation" or has_dead_or_saturation(report)]
    if report.training is not None:
        from gradcheck_cli.render import training_plots

        figures += [(prefix, title, build, training_plots.heat_map_height(report) if "heat" in prefix else _HEIGHT)
                    for prefix, title, build in training_plots.FIGURES]
    return figures


def inline_svg(svg: str, prefix: str, title: str) -> str:
    """A standalone SVG file -> an element for an HTML page.

    The XML prolog and namespace URLs go (HTML parses ``<svg>`` into the SVG namespace by
    itself, and the page must name no network address); every id and reference to it gets
    ``prefix`` (several figures on one page would otherwise share ids such as ``figure_1`` or a
    clip path, and a reference could resolve into the wrong figure); matplotlib's ``*{...}``
    style rule is scoped to the figure instead of the whole page."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)
    svg = svg.replace("<svg ", f'<svg class="gc-plot" role="img" aria-label="{html.escape(title, quote=True)}" ', 1)
    # Only inside tags: text content (layer names) has its '<' and '>' escaped, so a tag is exactly
    # '<...>', and a layer named 'id="x"' is left as it is.
    svg = re.sub(r"<[^>]+>", lambda tag: _prefix_ids(tag.group(), prefix), svg)
    return svg.replace('<style type="text/css">*{', '<style type="text/css">.gc-plot *{', 1)


def _prefix_ids(tag: str, prefix: str) -> str:
    """``id="x"``, ``href="#x"`` and ``url(#x)`` in one tag -> the figure's own ``prefix-x``."""
    tag = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', tag)
    tag = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', tag)
    return re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", tag)


def _render(build: Callable[[Figure, Report], None], report: Report, fmt: str, height: float | None = None) -> bytes:
    """Build one figure with ``build`` and save it, all inside the fixed style (text objects read
    rcParams when created, the SVG writer when saving)."""
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"), matplotlib.rc_context(_RC), warnings.catch_warnings():
        # A name with characters DejaVu Sans lacks would warn once per glyph; the text stays readable.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        width, default_height = _figsize(len(report.layers))
        figure = Figure(figsize=(width, height or default_height), layout="constrained")
        FigureCanvasAgg(figure)
        build(figure, report)
        buffer = io.BytesIO()
        if fmt == "svg":
            figure.savefig(buffer, format="svg", metadata=_SVG_METADATA)
        else:
            figure.savefig(buffer, format="png", dpi=_PNG_DPI, metadata=_PNG_METADATA)
    return buffer.getvalue()


def _figsize(layers: int) -> tuple[float, float]:
    """Wider for more layers (up to the _MAX_TICKS labels shown), so labels keep their room."""
    return (min(14.0, max(8.0, 3.0 + 0.25 * min(layers, _MAX_TICKS))), _HEIGHT)


# -- shared pieces ---------------------------------------------------------------------------


def label(name: str) -> str:
    """A layer name fit to draw: control/format/unassigned characters (invalid XML, bidi
    overrides) become '?', and long names keep their informative tail."""
    clean = "".join("?" if unicodedata.category(ch).startswith("C") else ch for ch in name)
    return clean if len(clean) <= _MAX_LABEL else "…" + clean[-(_MAX_LABEL - 1):]


def _finite_positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _points(layers: Sequence[LayerReport], get: Callable[[LayerReport], float | None]) -> tuple[list[int], list[float]]:
    """(x, y) for the layers whose value can sit on a log axis; None, NaN, Inf and 0 are left out."""
    pairs = [(l.index, get(l)) for l in layers]
    kept = [(x, y) for x, y in pairs if _finite_positive(y)]
    return [x for x, _ in kept], [float(y) for _, y in kept]  # type: ignore[arg-type]


def _flagged(report: Report) -> set[str]:
    """Names of layers with an error or warning finding (info findings are advice, not trouble)."""
    return {f.layer for f in report.findings if f.severity in ("error", "warning")}


def _layer_axis(ax: Axes, report: Report) -> None:
    """x axis = forward order: index ticks labelled with (thinned, cleaned) names, flagged ones red."""
    layers = report.layers
    step = max(1, math.ceil(len(layers) / _MAX_TICKS))
    shown = layers[::step]
    flagged = _flagged(report)
    ax.set_xticks([l.index for l in shown], [label(l.name) for l in shown],
                  rotation=60, ha="right", rotation_mode="anchor", parse_math=False)
    for tick, layer in zip(ax.get_xticklabels(), shown):
        if layer.name in flagged:
            tick.set_color(_RED)
    ax.set_xlim(layers[0].index - 0.7, layers[-1].index + 0.7)
    ax.set_xlabel("layer (forward order)" + (f", one name in {step} shown" if step > 1 else ""))


def _nothing(ax: Axes, why: str) -> None:
    """A clear message instead of an empty or broken chart."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"nothing to plot: {why}", ha="center", va="center", transform=ax.transAxes,
            color=_GREY, fontsize=11, parse_math=False)


def _skipped_note(ax: Axes, layers: Sequence[LayerReport], getters: Sequence[Callable[[LayerReport], float | None]]) -> None:
    """Say how many values a log axis cannot show (0, NaN, Inf), rather than dropping them silently."""
    bad = sorted({l.index for l in layers for get in getters
                  if (v := get(l)) is not None and not _finite_positive(v)})
    if bad:
        ax.text(0.005, 0.01, f"not shown (0, NaN or Inf): {len(bad)} value(s) at layer(s) "
                + ", ".join(map(str, bad[:8])) + (" ..." if len(bad) > 8 else ""),
                transform=ax.transAxes, fontsize=7, color=_GREY, va="bottom", parse_math=False)


def _log_axis(ax: Axes) -> None:
    """Log y axis with plain-text tick labels (1e-08): the default 10^-8 labels are mathtext, whose
    parsing is about 40% of a figure's render time, and plain labels are also searchable text."""
    from matplotlib.ticker import LogFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))


def _legend(ax: Axes) -> None:
    """Legend above the axes, out of the data's way (constrained layout makes room for it)."""
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=4, frameon=False, fontsize=8)


# -- the figures -----------------------------------------------------------------------------


def _grad_rms(l: LayerReport) -> float | None:
    return l.grad.output_rms


def _grad_weight(l: LayerReport) -> float | None:
    return l.grad.weight_norm


def block_stacks(report: Report) -> dict[str, dict[str, dict[str, LayerReport]]]:
    """The repeated stacks the figures draw one line per role for (the same rule that folds the layer table)."""
    from gradcheck_cli.render.grouping import GROUP_FROM_ROWS, stacks

    return stacks(report.layers) if len(report.layers) >= GROUP_FROM_ROWS else {}


def _role_lines(ax: Axes, report: Report, found: dict[str, dict[str, dict[str, LayerReport]]],
                get: Callable[[LayerReport], float | None], what: str) -> None:
    """One line per role (``attn.c_attn``, ``mlp.c_proj``, ``ln_1``, ...) across block index, on a log axis;
    blocks with an error/warning finding ringed in red. Several stacks: the role is named with its stack."""
    from gradcheck_cli.render.grouping import MIN_BLOCKS

    flagged = _flagged(report)
    _log_axis(ax)
    longest = 0
    ring_x: list[int] = []
    ring_y: list[float] = []
    for stack, blocks in found.items():
        order = list(blocks)
        longest = max(longest, len(order))
        roles: list[str] = []
        for by_role in blocks.values():
            roles += [r for r in by_role if r not in roles]
        for role in roles:
            points = [(k, get(blocks[b][role])) for k, b in enumerate(order) if role in blocks[b]]
            kept = [(x, float(y)) for x, y in points if _finite_positive(y)]  # type: ignore[arg-type]
            if len(points) < MIN_BLOCKS or not kept:
                continue
            name = label(role if len(found) == 1 else f"{stack}.*.{role}")
            (line,) = ax.plot([x for x, _ in kept], [y for _, y in kept], marker="o", markersize=3, label=name)
            line.set_gid(f"role-{len(ax.get_lines())}")
            for k, b in enumerate(order):
                layer = blocks[b].get(role)
                if layer is not None and layer.name in flagged and _finite_positive(get(layer)):
                    ring_x.append(k)
                    ring_y.append(float(get(layer)))  # type: ignore[arg-type]
    if ring_x:
        (rings,) = ax.plot(ring_x, ring_y, linestyle="none", marker="o", markersize=10, markerfacecolor="none",
                           markeredgecolor=_RED, markeredgewidth=1.6, label="layer with an error/warning finding")
        rings.set_gid("bad-layers")
    ax.set_xticks(range(longest), [str(k) for k in range(longest)])
    ax.set_xlim(-0.5, longest - 0.5)
    ax.set_xlabel("block index" + (f" ({', '.join(found)})" if found else ""))
    ax.set_ylabel(f"{what} (log scale)")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=min(4, max(1, len(ax.get_lines()))), frameon=False,
              fontsize=8)


def _gradient_flow(figure: Figure, report: Report) -> None:
    """Backward-signal RMS and weight-gradient norm per layer on a log axis: a vanishing gradient
    is a slope down towards the input, an exploding one a slope up; flagged layers in red. A model of
    repeated blocks gets one line per role across block index instead (a per-layer line is a sawtooth there:
    each block's norms sit orders of magnitude below its projections)."""
    layers = report.layers
    found = block_stacks(report)
    if found:
        figure.suptitle("Gradient flow: backward signal RMS per role, across blocks")
        return _role_lines(figure.add_subplot(), report, found, _grad_rms, "backward signal RMS")
    figure.suptitle("Gradient flow: backward signal and weight gradients per layer")
    ax = figure.add_subplot()
    if not layers:
        return _nothing(ax, "the report has no layers")
    rms_x, rms_y = _points(layers, _grad_rms)
    w_x, w_y = _points(layers, _grad_weight)
    if not rms_y and not w_y:
        return _nothing(ax, f"no finite, non-zero gradient in {len(layers)} layer(s)")
    _log_axis(ax)
    ax.plot(rms_x, rms_y, marker="o", markersize=3.5, color=_BLUE, label="backward signal RMS (dL/d output)")
    ax.plot(w_x, w_y, linestyle="none", marker="s", markersize=4, color=_ORANGE, label="|dW| (weight-gradient norm)")
    _mark_bad(ax, report)
    _layer_axis(ax, report)
    ax.set_ylabel("gradient (log scale)")
    _skipped_note(ax, layers, (_grad_rms, _grad_weight))
    _mark_nonfinite(ax, layers)
    _legend(ax)


def _mark_bad(ax: Axes, report: Report) -> None:
    """Red rings on the layers with error/warning findings (at their backward signal, else at
    their weight gradient, else on the bottom edge), and the first bad layer annotated."""
    flagged = _flagged(report)
    x: list[int] = []
    y: list[float] = []
    for l in report.layers:
        if l.name in flagged:
            value = next((v for v in (l.grad.output_rms, l.grad.weight_norm) if _finite_positive(v)), None)
            if value is not None:
                x.append(l.index)
                y.append(float(value))
    if x:
        (rings,) = ax.plot(x, y, linestyle="none", marker="o", markersize=10, markerfacecolor="none",
                           markeredgecolor=_RED, markeredgewidth=1.6, label="layer with an error/warning finding")
        rings.set_gid("bad-layers")
    first = next((l for l in report.layers if l.name == report.summary.first_bad_layer), None)
    if first is not None:
        ax.axvline(first.index, color=_RED, linestyle=":", linewidth=1.2).set_gid("first-bad-layer-line")
        right = first.index > (report.layers[0].index + report.layers[-1].index) / 2
        note = ax.annotate(f"first bad layer: {label(first.name)}", xy=(first.index, 1.0),
                           xycoords=("data", "axes fraction"), xytext=(-4 if right else 4, -4),
                           textcoords="offset points", ha="right" if right else "left", va="top",
                           color=_RED, fontsize=8, parse_math=False)
        note.set_gid("first-bad-layer")


def _mark_nonfinite(ax: Axes, layers: Sequence[LayerReport]) -> None:
    """NaN/Inf gradients have no place on a log axis: a red x on the top edge instead."""
    x = [l.index for l in layers if l.grad.nonfinite or (l.grad.output_rms is not None and not math.isfinite(l.grad.output_rms))]
    if x:
        (marks,) = ax.plot(x, [0.97] * len(x), linestyle="none", marker="x", color=_RED, markersize=7,
                           transform=ax.get_xaxis_transform(), label="NaN/Inf gradient")
        marks.set_gid("nonfinite-layers")


def _act(get: Callable[[Any], float | None]) -> Callable[[LayerReport], float | None]:
    return lambda l: get(l.activation) if l.activation is not None else None


_STD = _act(lambda a: a.std)
_SIGNAL_STD = _act(lambda a: a.signal_std)
# |mean| that is float rounding (numbers.ROUNDING: a LayerNorm's output mean is ~1e-9) is not drawn, so it cannot
# stretch the log axis over nine decades of nothing
_ABS_MEAN = _act(lambda a: abs(a.mean) if a.mean is not None and mean_shown(a.mean, a.std) != 0.0 else None)


def _forward_signal(figure: Figure, report: Report) -> None:
    """Activation std, input-dependent signal std and |mean| per layer (log axis): a vanishing or
    exploding forward signal, and offsets that dwarf the signal (|mean| above std)."""
    layers = report.layers
    found = block_stacks(report)
    if found:
        figure.suptitle("Forward signal: activation std per role, across blocks")
        return _role_lines(figure.add_subplot(), report, found, _STD, "activation std")
    figure.suptitle("Forward signal: activation scale per layer")
    ax = figure.add_subplot()
    if not layers:
        return _nothing(ax, "the report has no layers")
    series = [(_STD, "activation std", _BLUE, "o", "-"), (_SIGNAL_STD, "signal std (input-dependent)", _GREEN, ".", ":"),
              (_ABS_MEAN, "|mean|", _ORANGE, "^", "--")]
    points = [(_points(layers, get), name, color, marker, style) for get, name, color, marker, style in series]
    if not any(y for (_, y), *_ in points):
        return _nothing(ax, f"no finite, non-zero activation statistics in {len(layers)} layer(s)")
    _log_axis(ax)
    for (x, y), name, color, marker, style in points:
        ax.plot(x, y, linestyle=style, marker=marker, markersize=3.5, color=color, label=name)
    _layer_axis(ax, report)
    ax.set_ylabel("activation (log scale)")
    _skipped_note(ax, layers, [get for get, *_ in series])
    _legend(ax)


def _dead_saturation(figure: Figure, report: Report) -> None:
    """Dead-unit fraction (rectifiers) and saturated fraction (sigmoid/tanh) per layer, against
    the thresholds the verdicts used (dashed)."""
    from matplotlib.ticker import PercentFormatter

    figure.suptitle("Dead units and saturation per layer")
    ax = figure.add_subplot()
    layers = report.layers
    if not layers:
        return _nothing(ax, "the report has no layers")
    dead = [(l.index, l.activation.dead_ratio) for l in layers if l.activation and _finite(l.activation.dead_ratio)]
    sat = [(l.index, l.activation.saturation) for l in layers if l.activation and _finite(l.activation.saturation)]
    if not dead and not sat:
        return _nothing(ax, "no rectifier or sigmoid/tanh layer (dead units and saturation are measured there)")
    for points, name, color, shift in ((dead, "dead units (never fired)", _GREY, -0.2), (sat, "saturated outputs", _ORANGE, 0.2)):
        if points:
            ax.bar([x + shift for x, _ in points], [v for _, v in points], width=0.4, color=color, alpha=0.75, label=name)
            ax.plot([x + shift for x, _ in points], [v for _, v in points], linestyle="none", marker="_",
                    markersize=6, color=color)  # a visible mark at 0%, so measured-zero differs from not measured
    thresholds = report.run.thresholds
    for key, name, color, points in (("dead_ratio", "dead threshold", _GREY, dead),
                                     ("saturation", "saturation threshold", _ORANGE, sat)):
        limit = thresholds.get(key)
        if points and limit is not None and math.isfinite(limit):  # a threshold only where it was applied
            ax.axhline(limit, color=color, linestyle="--", linewidth=1.2, label=f"{name} ({limit:.0%})").set_gid(f"threshold-{key}")
    ax.set_ylim(-0.03, 1.05)  # the 0% marks stay visible above the axis line
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("fraction")
    _layer_axis(ax, report)
    _legend(ax)


def has_dead_or_saturation(report: Report) -> bool:
    """Some layer has a dead-unit ratio (a rectifier) or a saturated fraction (sigmoid/tanh): else the panel is
    left out rather than drawn empty."""
    return any(l.activation is not None and (_finite(l.activation.dead_ratio) or _finite(l.activation.saturation))
               for l in report.layers)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


_FIGURES: list[tuple[str, str, Callable[[Figure, Report], None]]] = [
    ("gradient-flow", "Gradient flow", _gradient_flow),
    ("forward-signal", "Forward signal", _forward_signal),
    ("dead-saturation", "Dead units and saturation", _dead_saturation),
]
