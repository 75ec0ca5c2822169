"""Front ends that turn a loaded model into an instrumented forward function.

Each front end is a context manager yielding ``forward(*args, **kwargs)``; while it is open,
every layer output reaches :meth:`StatsCollector.observe`. Hooks and graph rewrites are undone
on exit (always, via ``finally``), so the caller's model is left as it was.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from gradcheck_cli.loading.base import LoadedModel
    from gradcheck_cli.measure.collector import StatsCollector
    from gradcheck_cli.measure.tree import ModuleTree

Forward = Callable[..., Any]


def instrument(loaded: LoadedModel, collector: StatsCollector, *, functional: bool = True,
               tree: ModuleTree | None = None) -> AbstractContextManager[Forward]:
    """Pick the front end that can observe this model's layers (``tree``: the module's, when the caller
    has walked it already)."""
    if loaded.frontend == "torchscript":
        from gradcheck_cli.measure.instrument.torchscript import instrument_torchscript

        return instrument_torchscript(loaded.module, collector)
    if loaded.frontend == "fx":
        from gradcheck_cli.measure.instrument.fx import instrument_fx

        return instrument_fx(loaded.module, collector)
    if loaded.frontend == "onnx":
        from gradcheck_cli.measure.instrument.onnx_nodes import instrument_onnx

        return instrument_onnx(loaded.module, collector)
    from gradcheck_cli.measure.instrument.modules import instrument_modules

    return instrument_modules(loaded.module, collector, functional=functional, tree=tree)
