"""gradcheck: per-layer diagnosis of vanishing/exploding gradients, dead ReLUs and init scale.

The package root stays import-light (no torch) so ``gradcheck --help`` answers instantly;
the Python API is resolved lazily on first attribute access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "analyze", "assert_healthy", "AnalyzeOptions", "Thresholds", "Report", "Monitor", "TrainOptions",
           "GradcheckCallback", "GradcheckTrainerCallback"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from gradcheck_cli.analysis.engine import analyze
    from gradcheck_cli.testing.health import assert_healthy
    from gradcheck_cli.analysis.options import AnalyzeOptions, Thresholds
    from gradcheck_cli.report.model import Report
    from gradcheck_cli.training.monitor import Monitor
    from gradcheck_cli.training.options import TrainOptions

_LAZY = {
    "analyze": "gradcheck_cli.analysis.engine",
    "assert_healthy": "gradcheck_cli.testing.health",
    "AnalyzeOptions": "gradcheck_cli.analysis.options",
    "Thresholds": "gradcheck_cli.analysis.options",
    "Report": "gradcheck_cli.report.model",
    "Monitor": "gradcheck_cli.training.monitor",
    "TrainOptions": "gradcheck_cli.training.options",
    "GradcheckCallback": "gradcheck_cli.training.callbacks",
    "GradcheckTrainerCallback": "gradcheck_cli.training.callbacks",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gradcheck_cli' has no attribute {name!r}")
