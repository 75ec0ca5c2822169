"""Gradient health as an assertion: ``assert_healthy(model, inputs)`` for any test suite.

Pure library code (no pytest import), so it works under pytest, unittest or a plain script; the
pytest plugin (``gradcheck_cli.testing.pytest_plugin``) only adds a fixture with ini-file defaults on top.
Importing this module is cheap: torch, the engine and rich are imported when a check runs, never
at import time, because the pytest plugin imports this module in every test session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from gradcheck_cli.analysis.options import parse_fail_on
from gradcheck_cli.diagnose.registry import FINDING_KINDS, fails

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from gradcheck_cli.analysis.options import Thresholds
    from gradcheck_cli.report.model import Report

FailOn = str | Iterable[str] | None
MESSAGE_WIDTH = 120
"""Console width for the assertion message: fixed (and the environment ignored), so the text does not
depend on the terminal that runs the tests. Findings are printed unwrapped, so it rarely matters."""


def resolve_fail_on(fail_on: FailOn) -> frozenset[str]:
    """The CLI's ``--fail-on`` spellings (``"all"``, ``"none"``, ``"a,b"``; None: the CLI default) or an
    iterable of finding kinds (which may hold ``"all"``) -> a set of kinds. Unknown kinds are a UsageError."""
    if fail_on is None or isinstance(fail_on, str):
        return parse_fail_on(fail_on)
    kinds = [str(kind).strip() for kind in fail_on]
    if "all" in kinds:
        return frozenset(FINDING_KINDS)
    return parse_fail_on(",".join(kinds)) if kinds else frozenset()


def resolve_thresholds(thresholds: Thresholds | Mapping[str, float] | None, base: Thresholds | None = None) -> Thresholds:
    """A Thresholds object, or a mapping of threshold names to values applied over the defaults."""
    from gradcheck_cli.analysis.options import Thresholds

    if isinstance(thresholds, Thresholds):
        return thresholds
    return (base or Thresholds()).replace(**dict(thresholds or {}))


def assert_healthy(
    model: Any,
    inputs: Any = None,
    *,
    fail_on: FailOn = None,
    thresholds: Thresholds | Mapping[str, float] | None = None,
    **options: Any,
) -> Report:
    """Analyse ``model`` and raise ``AssertionError`` if it has a finding whose kind is in ``fail_on``.

    ``model`` and ``inputs`` are as for :func:`gradcheck_cli.analyze` (an nn.Module or a model file;
    a tensor, a tuple of positional tensors, a dict of keyword tensors or a data file), and so are
    the remaining keywords (``input_shapes=[(64, 32)]``, ``target=``, ``loss=``, ``batches=``,
    ``device=``, ``mode=``...). ``fail_on`` takes the CLI's spellings: ``"all"``,
    ``"none"``, ``"kind,kind"`` or an iterable of kinds; None means the CLI default
    (``exploding_gradient``, ``nonfinite``). ``thresholds`` is a :class:`Thresholds` or a dict of
    overrides such as ``{"exploding_gradient_ratio": 1e4}``.

    The message is the verdict, the failing kinds with their layers and every finding, as plain text; the raised error carries the
    full report as ``.report``. When healthy, returns the :class:`Report` for further assertions.
    """
    __tracebackhide__ = True
    report = _analyze(model, inputs, fail_on, thresholds, options)
    failing = [f for f in report.findings if fails(f, report.run.fail_on)]
    if failing:
        error = AssertionError(failure_message(report))
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report


def analyze(model: Any, inputs: Any = None, *, fail_on: FailOn = None,
            thresholds: Thresholds | Mapping[str, float] | None = None, **options: Any) -> Report:
    """:func:`gradcheck_cli.analyze` with ``fail_on`` and ``thresholds`` read as :func:`assert_healthy` reads them."""
    return _analyze(model, inputs, fail_on, thresholds, options)


def _analyze(model: Any, inputs: Any, fail_on: FailOn, thresholds: Any, options: dict[str, Any]) -> Report:
    from gradcheck_cli.analysis.engine import analyze as run_analysis

    given = options.pop("options", None)
    if given is not None:  # an AnalyzeOptions: fail_on/thresholds given here override its own
        changes: dict[str, Any] = {}
        if fail_on is not None:
            changes["fail_on"] = resolve_fail_on(fail_on)
        if thresholds is not None:
            changes["thresholds"] = resolve_thresholds(thresholds, given.thresholds)
        return run_analysis(model, inputs, options=dataclasses.replace(given, **changes), **options)
    return run_analysis(model, inputs, fail_on=resolve_fail_on(fail_on), thresholds=resolve_thresholds(thresholds),
                        **options)


def failure_message(report: Report) -> str:
    """Verdict, the failing kinds and their layers, then every finding: plain text, no ANSI codes.

    The findings come from the CLI's compact renderer (one heading line per finding, the explanation
    and the fix indented below), printed without wrapping: a long line stays one line, so it reads
    the same in a terminal of any width and in a CI log.
    """
    import io

    from rich.console import Console

    from gradcheck_cli.render.common import layer_list
    from gradcheck_cli.render.table import findings_list

    s = report.summary
    fail_on = set(report.run.fail_on)
    failing: dict[str, list[str]] = {}
    for f in report.findings:
        if fails(f, fail_on):
            failing.setdefault(f.kind, []).append(f.layer)
    lines = [f"gradcheck: {s.verdict}"]
    for kind, layers in failing.items():
        lines.append(f"  failing: {kind} at {layer_list(layers)}")
    if s.first_bad_layer:
        lines.append(f"  first bad layer: {s.first_bad_layer}")
    if s.first_nonfinite_layer:
        lines.append(f"  first non-finite layer: {s.first_nonfinite_layer}")
    lines.append(f"  fail_on: {', '.join(sorted(fail_on))}")
    buffer = io.StringIO()
    console = Console(file=buffer, width=MESSAGE_WIDTH, color_system=None, force_terminal=False, force_jupyter=False,
                      emoji=False, highlight=False, legacy_windows=False, _environ={})  # no env: same text everywhere
    console.print(findings_list(report), soft_wrap=True)
    findings = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())
    return "\n".join(lines) + "\n\n" + findings.strip("\n")


class GradientHealth:
    """:func:`assert_healthy` and :func:`analyze` with defaults for ``fail_on`` and option keywords
    (the ``gradcheck`` pytest fixture is one of these, with defaults from the ini file)."""

    def __init__(self, fail_on: FailOn = None, **defaults: Any) -> None:
        self.fail_on = resolve_fail_on(fail_on)
        self.defaults = {key: value for key, value in defaults.items() if value is not None}

    def _merge(self, fail_on: FailOn, options: dict[str, Any]) -> tuple[FailOn, dict[str, Any]]:
        if options.get("options") is not None:  # an explicit AnalyzeOptions wins over every default
            return fail_on, options
        return (self.fail_on if fail_on is None else fail_on), {**self.defaults, **options}

    def assert_healthy(self, model: Any, inputs: Any = None, *, fail_on: FailOn = None,
                       thresholds: Thresholds | Mapping[str, float] | None = None, **options: Any) -> Report:
        __tracebackhide__ = True
        fail_on, options = self._merge(fail_on, options)
        return assert_healthy(model, inputs, fail_on=fail_on, thresholds=thresholds, **options)

    def analyze(self, model: Any, inputs: Any = None, *, fail_on: FailOn = None,
                thresholds: Thresholds | Mapping[str, float] | None = None, **options: Any) -> Report:
        fail_on, options = self._merge(fail_on, options)
        return analyze(model, inputs, fail_on=fail_on, thresholds=thresholds, **options)

    def __repr__(self) -> str:
        return f"GradientHealth(fail_on={sorted(self.fail_on)!r}, defaults={self.defaults!r})"
