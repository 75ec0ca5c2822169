"""One module per finding kind, named after it; each defines ``find(layers, thresholds, found)``.

Shared machinery (the depth path and its trends) lives in :mod:`.depth`; :func:`finding` builds a
:class:`~gradcheck_cli.report.model.Finding` with the kind's registered hint.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gradcheck_cli.diagnose.registry import kind
from gradcheck_cli.layers import display_name
from gradcheck_cli.report.model import Finding, LayerReport


def finding(name: str, layer: str, value: float, threshold: float, message: str, severity: str | None = None,
            hint: str | None = None, step: int | None = None) -> Finding:
    """A finding of kind ``name`` at its registered severity (unless raised) with its registered fix (unless
    the case has a more specific one, as recurrent layers do)."""
    registered = kind(name)
    return Finding(name, severity or registered.severity, layer, value, threshold, message, hint or registered.hint, step)


def shown(layer: LayerReport) -> str:
    """The layer as a message names it (``0 (Linear)`` for a bare number; :func:`~gradcheck_cli.layers.display_name`)."""
    return display_name(layer.name, layer.type)


def named(layers: Sequence[LayerReport], name: str) -> str:
    """:func:`shown` for a layer known by name only (series over training): its row's type when there is one."""
    return next((shown(layer) for layer in layers if layer.name == name), name)


def finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)
