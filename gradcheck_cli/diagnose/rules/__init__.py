"""One module per finding kind, named after it; each defines ``find(layers, thresholds, found)``.

Shared machinery (the depth path and its trends) lives in :mod:`.depth`; :func:`finding` builds a
:class:`~gradcheck_cli.report.model.Finding` with the kind's registered hint.
"""

from __future__ import annotations

import math

from gradcheck_cli.diagnose.registry import kind
from gradcheck_cli.report.model import Finding


def finding(name: str, layer: str, value: float, threshold: float, message: str, severity: str | None = None,
            hint: str | None = None, step: int | None = None) -> Finding:
    """A finding of kind ``name`` at its registered severity (unless raised) with its registered fix (unless
    the case has a more specific one, as recurrent layers do)."""
    registered = kind(name)
    return Finding(name, severity or registered.severity, layer, value, threshold, message, hint or registered.hint, step)


def finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)
