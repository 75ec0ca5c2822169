"""The tables' number formatting: rounding-level means are shown as 0, and nothing else is."""

from __future__ import annotations

import math

from gradcheck_cli.render.numbers import centring_shown, mean_shown, num


def test_a_mean_at_float_rounding_is_shown_as_zero() -> None:
    # a LayerNorm's output: mean 5.6e-9 on one CPU, -1.1e-8 on another, std 1
    assert num(mean_shown(5.59e-9, 1.0)) == num(mean_shown(-1.12e-8, 1.0)) == "0"
    assert num(centring_shown(5.6e-9)) == "0"


def test_real_means_are_kept() -> None:
    assert mean_shown(-0.0907, 0.585) == -0.0907
    assert mean_shown(2e-5, 1.0) == 2e-5  # above the rounding share: a (small) real offset
    assert mean_shown(1e-9, 1e-6) == 1e-9  # a tiny layer's mean, relative to its own tiny std
    assert centring_shown(0.15) == 0.15


def test_an_overflowed_std_does_not_hide_the_mean() -> None:
    """An exploding layer's std overflows float32 to inf while its mean is finite: the mean is shown."""
    assert mean_shown(6.91e17, math.inf) == 6.91e17
    assert mean_shown(0.5, None) == 0.5 and mean_shown(None, 1.0) is None
    assert mean_shown(0.5, 0.0) == 0.5 and mean_shown(math.nan, 1.0) is not None
