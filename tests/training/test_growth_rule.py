"""The phases of a training run on synthetic series (numbers from benchmarks/verdicts/trainability.py)."""

from __future__ import annotations

import math

import pytest

from gradcheck_cli.diagnose.over_training import divergence, growth


def test_geometric_growth_is_dated_from_the_last_healthy_step_at_its_rate() -> None:
    steps = list(range(40))
    norms = [1.0] * 10 + [1.1 ** k for k in range(1, 31)]
    losses = [1.0] * 10 + [1.2 ** k for k in range(1, 31)]
    grew = growth(steps, norms, 10.0, losses)
    assert grew is not None and grew.start == 16  # 1.1^7 = 1.95 is the last within 2x of the baseline
    assert grew.rate == pytest.approx(1.1, rel=1e-9) and grew.peak_step == 39


def test_a_spike_is_judged_against_the_steps_before_it() -> None:
    """A tanh RNN (radius 1.5, T=60): 20.1, 2.08, 226, 1.32 at steps 0/10/20/30 while the loss rose."""
    steps, norms = [0, 10, 20, 30], [20.1, 2.08, 226.0, 1.32]
    losses = [1.2] * 15 + [1.18] + [1.3] * 5 + [1.57] * 10
    grew = growth(steps, norms, 10.0, losses)
    assert grew is not None and grew.baseline == pytest.approx(11.09) and grew.start == 10 and grew.peak_step == 20
    assert grew.rate == pytest.approx((226.0 / 2.08) ** (1 / 10))  # from the last healthy step: finite


def test_a_norm_rising_from_a_vanishing_start_while_the_loss_falls_is_not_an_explosion() -> None:
    """A 30-layer Xavier ReLU MLP: 0.18 -> 2.7 while the loss falls 2.30 -> 1.70."""
    steps = list(range(0, 330, 10))
    norms = [0.184 * 1.09 ** i for i in range(len(steps))]
    losses = [2.30 - 0.6 * s / 329 for s in range(330)]
    assert growth(steps, norms, 10.0, losses) is None
    assert growth(steps, norms, 10.0) is not None  # without the loss it would be read as one


def test_largest_at_the_first_step_is_the_model_at_init_and_overflow_is_always_growth() -> None:
    assert growth([0, 1, 2, 3], [13075.0, 3.98, 2.41, 2.0], 10.0) is None
    grew = growth([0, 1, 2, 3], [1.0, 3.0, 50.0, math.inf], 10.0)
    assert grew is not None and grew.peak == math.inf and grew.peak_step == 3 and grew.start == 1  # 3 <= 2 x 2


def test_divergence_names_the_first_step_past_the_factor_or_non_finite() -> None:
    assert divergence([1.0, 2.0, 3.9, 4.1], 4.0) == (3, 4.1)
    assert divergence([1.0, 0.5, math.nan], 4.0)[0] == 2
    assert divergence([-1.0, 5.0], 4.0) is None  # a loss that starts at or below 0 has no ratio to judge
