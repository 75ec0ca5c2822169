"""Compact, width-stable number formatting shared by the text renderers."""

from __future__ import annotations

import math


def num(value: float | int | None, digits: int = 3) -> str:
    """3 significant digits; scientific outside [1e-3, 1e4); '-' for missing, 'nan'/'inf' kept."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.{digits}g}"
    return f"{value:.{digits - 1}e}"


ROUNDING = 1e-5
"""An activation mean below this fraction of its std is float rounding (a LayerNorm's output mean is ~1e-9,
and its digits differ between CPUs): shown as 0 in the tables and not drawn in the plots. The JSON keeps it."""


def mean_shown(mean: float | None, std: float | None) -> float | None:
    """The activation mean as the tables show it: 0 where it is rounding (:data:`ROUNDING`)."""
    return 0.0 if mean is not None and std and math.isfinite(std) and abs(mean) < ROUNDING * std else mean


def centring_shown(centring: float | None) -> float | None:
    """|mean|/std as the tables show it: 0 where the mean is rounding."""
    return 0.0 if centring is not None and centring < ROUNDING else centring


def pct(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    return f"{value:.0%}" if value == 0 or value >= 0.01 else f"{value:.1%}"


def log_bar(value: float | None, low: float, high: float, width: int = 16) -> str:
    """A bar whose length is linear in log10(value) between ``low`` and ``high``."""
    if value is None or not math.isfinite(value):
        return ""
    if value <= 0:
        return "·"
    lo, hi = math.log10(low), math.log10(high)
    span = hi - lo
    fraction = 1.0 if span <= 0 else (math.log10(value) - lo) / span
    return "█" * max(1, round(fraction * width))
