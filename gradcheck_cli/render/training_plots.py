"""Figures of a training run (``analyze --steps N``): loss and gradient norm, a layer x step heat map
of the backward signal, and dead units over steps.

Drawn by :mod:`gradcheck_cli.render.plots` (same fixed style, same determinism, same escaping of layer
names); this module only builds the axes. Training goes non-finite by design here (that is what the
tool looks for), so every series is masked: NaN, Inf and missing values (``None``, also how a saved
report keeps NaN/Inf inside a series) are left out of log axes and colour scales and marked instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gradcheck_cli.layers import RECTIFIER_KINDS
from gradcheck_cli.render import plots as p
from gradcheck_cli.render.training import DIVERGENCE_KINDS
from gradcheck_cli.report.model import Report, TrainingReport

if TYPE_CHECKING:  # matplotlib is optional: only for type hints
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MARKED_KINDS = (*DIVERGENCE_KINDS, "nonfinite")
"""Findings whose step is drawn as a vertical line on every training figure."""
_MARK_COLOUR = {"exploding_gradient": "#6941c6"}
"""Divergence lines: exploding gradient purple, the others red (so two at nearby steps are told apart)."""
_MAX_LINES = 12
"""Rectifier layers drawn one line each in the dead-units figure (the ones that end most dead)."""


def _training(report: Report) -> TrainingReport:
    assert report.training is not None
    return report.training


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _masked(xs: Sequence[int], ys: Sequence[float | None], log: bool) -> tuple[list[int], list[float]]:
    """NaN where a value cannot be drawn, so the line breaks there instead of joining across it."""
    keep = _usable if log else _finite
    return list(xs), [float(y) if keep(y) else math.nan for y in ys]  # type: ignore[arg-type]


def mark_steps(ax: Axes, report: Report) -> None:
    """A dashed red line at the step of each divergence/non-finite finding, labelled with its kind."""
    seen: set[tuple[str, int]] = set()
    for f in report.findings:
        if f.kind in MARKED_KINDS and f.step is not None and (f.kind, f.step) not in seen:
            seen.add((f.kind, f.step))
            ax.axvline(f.step, color=_MARK_COLOUR.get(f.kind, p._RED), linestyle=":" if f.kind == "nonfinite" else "--",
                       linewidth=1.2,
                       label=f"{f.kind} at step {f.step}").set_gid(f"step-{f.kind}")


def _nonfinite_marks(ax: Axes, steps: Sequence[int], values: Sequence[float | None], name: str) -> None:
    """Red x on the top edge at steps whose value is NaN/Inf (or missing: non-finite in a saved report)."""
    x = [s for s, v in zip(steps, values) if not _finite(v)]
    if x:
        (marks,) = ax.plot(x, [0.97] * len(x), linestyle="none", marker="x", color=p._RED, markersize=7,
                           transform=ax.get_xaxis_transform(), label=f"{name} NaN/Inf")
        marks.set_gid(f"nonfinite-{name.replace(' ', '-')}")


def loss_and_norm(figure: Figure, report: Report) -> None:
    """Loss (every step) and global gradient norm (logged steps), each on its own log axis (the loss
    on a linear one when it is not positive, e.g. a projection loss)."""
    t = _training(report)
    figure.suptitle(f"Training: loss and global gradient norm over {t.completed} step(s)")
    ax = figure.add_subplot()
    loss_steps = list(range(len(t.loss)))
    if not any(_finite(v) for v in t.loss) and not any(_usable(v) for v in t.grad_norm):
        return p._nothing(ax, "no finite loss or gradient norm was recorded")
    log_loss = all(_usable(v) for v in t.loss if _finite(v))
    if log_loss:
        p._log_axis(ax)
    ax.plot(*_masked(loss_steps, t.loss, log_loss), color=p._BLUE, marker="." if len(t.loss) <= 60 else None,
            label="loss")
    ax.set_ylabel("loss" + (" (log scale)" if log_loss else ""))
    ax.set_xlabel("optimiser step")
    norm_ax = ax.twinx()
    p._log_axis(norm_ax)
    norm_ax.grid(False)
    norm_ax.plot(*_masked(t.logged_steps, t.grad_norm, True), color=p._ORANGE, linestyle="--",
                 marker="." if len(t.logged_steps) <= 60 else None, label="global grad norm")
    norm_ax.set_ylabel("global gradient norm (log scale)")
    if t.clip_grad_norm:
        norm_ax.axhline(t.clip_grad_norm, color=p._GREY, linestyle=":", label=f"clipped at {t.clip_grad_norm:g}")
    _nonfinite_marks(ax, loss_steps, t.loss, "loss")
    _nonfinite_marks(ax, t.logged_steps, t.grad_norm, "grad norm")
    mark_steps(ax, report)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = norm_ax.get_legend_handles_labels()
    ax.legend(handles + more, labels + more_labels, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=4,
              frameon=False, fontsize=8)


def _edges(steps: Sequence[int]) -> list[float]:
    """Cell edges halfway between logged steps (which need not be evenly spaced: the last is always logged)."""
    if len(steps) == 1:
        return [steps[0] - 0.5, steps[0] + 0.5]
    mids = [(a + b) / 2 for a, b in zip(steps, steps[1:])]
    return [steps[0] - (mids[0] - steps[0]), *mids, steps[-1] + (steps[-1] - mids[-1])]


def grad_heat_map(figure: Figure, report: Report) -> None:
    """Backward RMS per layer (rows, forward order from the top) and logged step (columns) on a log
    colour scale; grey: not measured, red x: NaN/Inf; the divergence step marked."""
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import LogFormatter

    t = _training(report)
    figure.suptitle("Training: backward signal RMS per layer and step (log colour scale)")
    ax = figure.add_subplot()
    if not t.layers or not t.logged_steps:
        return p._nothing(ax, "no layer was measured over training")
    n = len(t.logged_steps)
    grid = np.array([[_cell(layer.grad_rms, i) for i in range(n)] for layer in t.layers], dtype=float)
    shown = np.ma.masked_where(~(np.isfinite(grid) & (grid > 0)), grid)
    if shown.count() == 0:
        return p._nothing(ax, "no finite, non-zero backward signal at any logged step")
    low, high = float(shown.min()), float(shown.max())
    cmap = colormaps["viridis"].with_extremes(bad="#e6e6e6")
    mesh = ax.pcolormesh(_edges(t.logged_steps), np.arange(len(t.layers) + 1) - 0.5, shown, cmap=cmap,
                         norm=LogNorm(vmin=low, vmax=high if high > low else low * 10), shading="flat")
    bar = figure.colorbar(mesh, ax=ax, format=LogFormatter())
    bar.set_label("backward RMS (log)")
    ax.grid(False)
    ax.set_ylim(len(t.layers) - 0.5, -0.5)  # the first layer on top
    every = max(1, math.ceil(len(t.layers) / p._MAX_TICKS))
    rows = list(range(0, len(t.layers), every))
    ax.set_yticks(rows, [p.label(t.layers[i].name) for i in rows], parse_math=False)
    ax.set_ylabel("layer (forward order)" + (f", one name in {every} shown" if every > 1 else ""))
    ax.set_xlabel("optimiser step (logged)")
    bad = [(t.logged_steps[i], r) for r, layer in enumerate(t.layers) for i in range(n)
           if (i < len(layer.nonfinite) and layer.nonfinite[i]) or (not math.isnan(grid[r, i]) and not math.isfinite(grid[r, i]))]
    if bad:
        (marks,) = ax.plot([s for s, _ in bad], [r for _, r in bad], linestyle="none", marker="x", color=p._RED,
                           markersize=6, label="NaN/Inf")
        marks.set_gid("nonfinite-cells")
    mark_steps(ax, report)
    if ax.get_legend_handles_labels()[0]:
        p._legend(ax)


def _cell(values: Sequence[float | None], i: int) -> float:
    value = values[i] if i < len(values) else None
    return math.nan if value is None else float(value)


def dead_over_steps(figure: Figure, report: Report) -> None:
    """Fraction of dead units per rectifier layer at each logged step, against the dead threshold."""
    from matplotlib.ticker import PercentFormatter

    t = _training(report)
    figure.suptitle("Training: dead units per rectifier layer over steps")
    ax = figure.add_subplot()
    layers = [l for l in t.layers if l.kind in RECTIFIER_KINDS and any(_finite(v) for v in l.dead)]
    if not layers:
        return p._nothing(ax, "no rectifier layer (ReLU family) was measured")
    last = {l.name: next((v for v in reversed(l.dead) if _finite(v)), 0.0) for l in layers}
    drawn = sorted(layers, key=lambda l: -last[l.name])[:_MAX_LINES]
    for layer in (l for l in layers if l in drawn):  # forward order in the legend
        ax.plot(*_masked(t.logged_steps, layer.dead, False), marker="." if len(t.logged_steps) <= 60 else None,
                label=f"layer {layer.name}" if layer.name.isdigit() else p.label(layer.name))
    limit = report.run.thresholds.get("dead_ratio")
    if limit is not None and math.isfinite(limit):
        ax.axhline(limit, color=p._GREY, linestyle="--", linewidth=1.2, label=f"dead threshold ({limit:.0%})")
    mark_steps(ax, report)
    ax.set_ylim(-0.03, 1.05)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("dead units")
    ax.set_xlabel("optimiser step (logged)" + (f"; {len(drawn)} of {len(layers)} layers drawn (most dead at the end)"
                                               if len(drawn) < len(layers) else ""))
    p._legend(ax)


FIGURES = [
    ("training-loss", "Training: loss and gradient norm", loss_and_norm),
    ("training-heat-map", "Training: backward signal per layer and step", grad_heat_map),
    ("training-dead", "Training: dead units over steps", dead_over_steps),
]
"""(id prefix, title, builder) of the training figures: appended to a training report's figures."""


def heat_map_height(report: Report) -> float:
    """Taller for more layers, so row labels keep their room."""
    return min(12.0, max(4.6, 1.5 + 0.22 * min(len(_training(report).layers), p._MAX_TICKS)))
