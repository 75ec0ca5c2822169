"""Every finding kind, once: its name (the JSON string), default severity, thresholds, meaning and fix.

A kind's rule lives in ``diagnose/rules/<name>.py`` (a function ``find``), loaded when a report is
diagnosed, so this table stays import-light for ``--help``, ``--fail-on`` parsing and the pytest plugin.
Adding a kind is one entry here plus that one file; ``tests/diagnose/test_registry.py`` checks every
entry (rule present, thresholds defined, documented in the README, hint written, named in the schema).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from gradcheck_cli.diagnose.evaluate import Evidence
    from gradcheck_cli.report.model import Finding

SEVERITIES = ("error", "warning", "info")
"""The one severity vocabulary, worst first. ``error``: the model will not train well as it is (the
default gate); ``warning``: likely to hurt training; ``info``: worth knowing, often by design."""

Rule = Callable[["Evidence"], "list[Finding]"]
"""The evidence (layer rows, thresholds, main paths, findings of the kinds evaluated before) -> findings."""


@dataclass(frozen=True)
class FindingKind:
    name: str
    """The kind as written in JSON, ``--fail-on`` and ignore rules."""
    severity: str
    """Its usual severity; a rule may raise it for the worst cases (every unit of a layer dead)."""
    meaning: str
    """One line: what the finding says about the model."""
    hint: str
    """The fix, as the reports print it."""
    thresholds: tuple[str, ...]
    """The :class:`~gradcheck_cli.analysis.options.Thresholds` fields its rule reads."""

    @functools.cached_property
    def rule(self) -> Rule:  # imported on first use, then kept (an import_module per rule per report: ~40 us)
        return importlib.import_module(f"{__package__}.rules.{self.name}").find


KINDS: tuple[FindingKind, ...] = (
    FindingKind(
        "vanishing_gradient", "error",
        "the backward signal shrinks across depth: the layers before it barely learn",
        "use ReLU-family activations with He init, add BatchNorm/LayerNorm, or add residual shortcuts",
        ("vanishing_gradient_ratio", "min_depth", "layer_gain", "gain_depth", "gain_total"),
    ),
    FindingKind(
        "exploding_gradient", "error",
        "the backward signal grows across depth (or is huge): updates there will be huge and unstable",
        "lower the weight scale (He/Xavier init), add normalisation, and clip gradients (torch.nn.utils.clip_grad_norm_)",
        ("exploding_gradient_ratio", "gradient_abs_max", "min_depth", "layer_gain", "gain_depth", "gain_total",
         "train_gradient_growth"),
    ),
    FindingKind(
        "vanishing_activation", "warning",
        "the input-dependent part of the forward signal fades across depth",
        "scale the init to the activation (He for ReLU, Xavier for tanh) or add normalisation layers",
        ("vanishing_activation_ratio", "min_depth", "layer_gain", "gain_depth", "gain_total"),
    ),
    FindingKind(
        "exploding_activation", "error",
        "the forward signal grows across depth (or is huge)",
        "reduce the weight scale (He/Xavier init) or add normalisation layers",
        ("exploding_activation_ratio", "activation_abs_max", "min_depth", "layer_gain", "gain_depth", "gain_total"),
    ),
    FindingKind(
        "dead_relu", "warning",
        "rectifier units that never fire on the data, so they pass no gradient",
        "lower the learning rate, initialise biases at 0 (not negative), or use LeakyReLU/ELU",
        ("dead_ratio",),
    ),
    FindingKind(
        "saturated_activation", "warning",
        "sigmoid/tanh outputs at an asymptote, where the derivative is ~0",
        "shrink the pre-activation scale (Xavier init, normalisation) or switch sigmoid/tanh to ReLU in hidden layers",
        ("saturation",),
    ),
    FindingKind(
        "not_zero_centred", "info",
        "an activation feeding a weight layer is far from zero-mean: its weight gradients share one sign",
        "use tanh or a ReLU-family activation in hidden layers, or add BatchNorm after it",
        ("centring",),
    ),
    FindingKind(
        "nonfinite", "error",
        "NaN/Inf in a layer's output or gradient",
        "find the first non-finite layer below; check the input data, lower the learning rate, clip gradients",
        (),
    ),
    FindingKind(
        "symmetric_units", "error",
        "the units of consecutive layers start identical (constant or copied weights): symmetry is never broken",
        "initialise with random weights (nn.init.kaiming_normal_ / xavier_normal_): constant, zero or copied rows "
        "in consecutive layers never become different",
        ("symmetry",),
    ),
    FindingKind(
        "init_mismatch", "warning",
        "a weight layer's scale is far from what its following activation needs",
        "re-initialise with the recommended scheme (see the init table)",
        ("init_ratio", "init_tolerance", "chaos"),
    ),
    FindingKind(
        "diverging_loss", "error",
        "over training (--steps), the loss grows past its starting value or becomes NaN/Inf",
        "lower the learning rate (the training advice gives a bound; --lr-scan finds one), clip gradients, add warm-up",
        ("divergence",),
    ),
    FindingKind(
        "dying_relu", "warning",
        "over training (--steps), rectifier units that fired at step 0 stop firing for good",
        "lower the learning rate, use LeakyReLU/GELU, or add normalisation before the rectifier",
        ("dying",),
    ),
    FindingKind(
        "update_ratio", "warning",
        "over training (--steps), the optimiser's step on a weight is far from ~1e-3 of the weight",
        "tune the learning rate (per layer with parameter groups if only some layers are off)",
        ("update_ratio_high", "update_ratio_low"),
    ),
)
"""Every kind, in the order they are evaluated (init_mismatch after the depth trends it reads; the kinds
over training last, as they read only the training series)."""

BY_NAME: dict[str, FindingKind] = {kind.name: kind for kind in KINDS}
FINDING_KINDS: tuple[str, ...] = tuple(BY_NAME)
"""The kind names, in the documented order."""


def kind(name: str) -> FindingKind:
    return BY_NAME[name]


def fails(finding: Finding, fail_on: frozenset[str] | set[str] | list[str]) -> bool:
    """Whether ``finding`` is in the fail set: its kind is listed, or a severity at or above its own is
    (``error`` gates errors; ``warning`` gates warnings and errors; ``info`` gates everything)."""
    if finding.kind in fail_on:
        return True
    rank = SEVERITIES.index(finding.severity)
    return any(token in fail_on for token in SEVERITIES[rank:])
