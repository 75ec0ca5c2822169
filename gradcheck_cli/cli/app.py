"""The command line: the only module that prints and picks the exit code.

Heavy imports (torch, the engine) happen inside the command, so ``gradcheck --help`` and
``--version`` answer without importing torch.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core

from gradcheck_cli.cli.io import (
    boundary,
    append_step_summary,
    check_writable,
    color_mode,
    console,
    emit,
    fail,
    log_line,
    progress,
    timed,
)
from gradcheck_cli.cli.formats import CompareFormat
from gradcheck_cli.cli.options import (
    BatchesOpt,
    BatchSizeOpt,
    Color,
    ColorOpt,
    ConfigOpt,
    DebugOpt,
    DeviceOpt,
    DtypeOpt,
    FactoryOpt,
    FailOnOpt,
    FormatOpt,
    IgnoreOpt,
    InputOpt,
    Loss,
    LossOpt,
    Mode,
    ModelArg,
    ModeOpt,
    NoConfigOpt,
    OutputOpt,
    PlotOpt,
    QuietOpt,
    VerboseOpt,
    RangeOpt,
    FactoryArgOpt,
    ImportOpt,
    RemoteCodeOpt,
    SampleStatsOpt,
    SeedOpt,
    ShapeOpt,
    TargetOpt,
    ThresholdOpt,
    TrustOpt,
    VerifyOpt,
    StepsOpt,
    EveryOpt,
    OptimizerOpt,
    LrOpt,
    WeightDecayOpt,
    MomentumOpt,
    ClipOpt,
    LrScanOpt,
    DistributedOpt,
    ShardByOpt,
    MetaInitOpt,
    DepthOpt,
    OnlyFindingsOpt,
    MaxRowsOpt,
)
from gradcheck_cli.cli.process import follower_rank, imports_without_gc, one_shot_process, silent_console, version_text
from gradcheck_cli.cli.settings import import_modules, resolve_settings
from gradcheck_cli.loading.factory import parse_factory_args
from gradcheck_cli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from gradcheck_cli.render.formats import COMPARISON_FORMATS, FORMATS, REPORT_FORMATS, Format, choose, step_summary


class _OneLineGroup(typer.core.TyperGroup):
    """Click's own usage errors (an unknown option, a bad choice, ``--batch-size 0``) as one line
    too, like every other error, instead of click's multi-line usage panel."""

    def make_context(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        with _one_line_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):  # noqa: ANN001, ANN201
        with _one_line_usage_errors():
            return super().invoke(ctx)


class _one_line_usage_errors:  # noqa: N801 - used as a context manager
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> None:  # noqa: ANN001
        try:  # recent typer vendors its own copy of click
            from typer._click.exceptions import UsageError as ClickUsageError
        except ImportError:  # pragma: no cover - older typer on the real click
            from click import UsageError as ClickUsageError

        if not isinstance(exc, ClickUsageError) or type(exc).__name__ == "NoArgsIsHelpError":
            return
        where = exc.ctx.command_path if exc.ctx is not None else "gradcheck"
        fail(console(stderr=True), UsageError(exc.format_message(), hint=f"see '{where} --help'"), False, exc.exit_code)


app = typer.Typer(
    cls=_OneLineGroup,
    name="gradcheck",
    help="Diagnose vanishing/exploding gradients, dead ReLUs, saturation and init scale, layer by layer.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Show the version (and torch's, with its CUDA build, and "
                                                         "Python's) and exit.")] = None,
) -> None:
    """gradcheck: per-layer gradient-flow diagnostics for PyTorch models."""


@app.command()
def analyze(
    ctx: typer.Context,
    model: ModelArg,
    input: InputOpt = None,  # noqa: A002 - the flag is --input
    input_shape: ShapeOpt = None,
    dtype: DtypeOpt = "float32",
    input_range: RangeOpt = None,
    target: TargetOpt = None,
    loss: LossOpt = Loss.auto,
    batch_size: BatchSizeOpt = None,
    batches: BatchesOpt = 1,
    sample_stats: SampleStatsOpt = None,
    steps: StepsOpt = None,
    every: EveryOpt = None,
    optimizer: OptimizerOpt = None,
    lr: LrOpt = None,
    weight_decay: WeightDecayOpt = None,
    momentum: MomentumOpt = 0.0,
    clip_grad_norm: ClipOpt = None,
    lr_scan: LrScanOpt = False,
    distributed: DistributedOpt = "none",  # type: ignore[assignment]
    shard_by: ShardByOpt = None,
    meta_init: MetaInitOpt = False,
    device: DeviceOpt = "cpu",
    seed: SeedOpt = 0,
    mode: ModeOpt = Mode.train,
    factory: FactoryOpt = None,
    trust_pickle: TrustOpt = False,
    trust_remote_code: RemoteCodeOpt = False,
    factory_arg: FactoryArgOpt = None,
    imports: ImportOpt = None,
    fail_on: FailOnOpt = "error",
    format: FormatOpt = None,  # noqa: A002 - the flag is --format
    output: OutputOpt = None,
    plot: PlotOpt = None,
    depth: DepthOpt = None,
    only_findings: OnlyFindingsOpt = False,
    max_rows: MaxRowsOpt = None,
    threshold: ThresholdOpt = None,
    verify: VerifyOpt = False,
    ignore: IgnoreOpt = None,
    config: ConfigOpt = None,
    no_config: NoConfigOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    color: ColorOpt = Color.auto,
    debug: DebugOpt = False,
) -> None:
    """Run instrumented forward and backward passes and report per-layer signal health.

    Settings come from the command line, then GRADCHECK_<KEY> environment variables
    (GRADCHECK_FAIL_ON=all), then the config file (--config FILE, else the nearest gradcheck.toml or
    pyproject.toml with [tool.gradcheck]), then the defaults.

    Exit codes: 0 no finding in the fail set, 1 a finding in the fail set, 2 bad invocation or
    unreadable input, 3 the model failed while running, 4 internal error, 130 interrupted.
    """
    follower = follower_rank(_value(distributed))
    colors = color_mode(_value(color))
    err = console(stderr=True, color=colors) if not follower else silent_console()
    log = log_line(err) if verbose else None
    output = _stdout_dash(output)
    with boundary(err, debug):
        _check_verbosity(quiet, verbose)
        fmt = _choose_format(_value(format), output)
        _check_outputs(output, plot)
        with imports_without_gc():  # the settings import torch (shapes, dtypes)
            settings = resolve_settings(ctx, config, no_config, verify=verify)
            for line in settings.sources.lines() if log is not None else ():
                log(line)
            import_modules(imports or [])
            with timed(log, "importing torch and the engine"):
                from gradcheck_cli.analysis.engine import analyze as run

        with progress(not quiet and err.is_terminal and not follower, verbose and not follower, colors) as bar:
            report = run(model, data=settings.data, factory=settings.factory, trust_pickle=trust_pickle,
                         trust_remote_code=trust_remote_code, factory_args=parse_factory_args(factory_arg or []),
                         options=settings.options, progress=bar)

    if not follower:  # a distributed run: rank 0 prints and writes; every rank exits with the same code
        with timed(log, f"rendering {fmt.name}"):
            emit(lambda width: fmt.report(report, width, _view(depth, only_findings, max_rows)),
                 report.summary.verdict, output, quiet, err, debug, colors, wants_width=fmt.wants_width)
        _extras(report, fmt, plot, quiet, err, debug, log)
    raise typer.Exit(report.summary.exit_code)


def _check_verbosity(quiet: bool, verbose: bool) -> None:
    if quiet and verbose:
        raise UsageError("give --quiet or --verbose, not both")


def _view(depth: int | None, only_findings: bool, max_rows: int | None):  # noqa: ANN202 - render.grouping.View
    """--depth, --only-findings, --max-rows: how the layer tables are laid out (None: the defaults, and the
    table-grouping module is not imported by a run that writes JSON)."""
    if depth is None and not only_findings and max_rows is None:
        return None
    from gradcheck_cli.render.grouping import View

    return View(depth=depth, only_findings=only_findings, max_rows=max_rows)


def _value(choice: Enum | None) -> str | None:
    return None if choice is None else choice.value


def _stdout_dash(output: Path | None) -> Path | None:
    """``-o -`` is standard output, as for most command-line tools (not a file named ``-``)."""
    return None if output is not None and str(output) == "-" else output


_ANY_FORMAT_SUFFIXES = (".txt",)
"""Plain-text files: any format may go there (a table, annotations, Markdown ...)."""


def _choose_format(name: str | None, output: Path | None, offered: tuple[str, ...] = REPORT_FORMATS) -> Format:
    """The format to write, refusing a file name that says another format (``-o r.html --format json``, or a
    suffix this command cannot write) rather than writing a file whose name lies about its content."""
    suffix = output.suffix.lower() if output is not None else ""
    implied = next((f.name for f in FORMATS.values() if suffix in f.suffixes), None)
    if implied is not None and suffix not in _ANY_FORMAT_SUFFIXES:
        if name is not None and name != implied:
            own = FORMATS[name].suffixes
            raise UsageError(f"--output {output} names a {implied} file ({suffix}) but --format is {name}",
                             hint=f"drop --format, or write to a file ending in {own[0]}" if own else "drop --format")
        if name is None and implied not in offered:
            raise UsageError(f"--output {output}: this command cannot write {implied} ({suffix})",
                             hint="use a file ending in " + ", ".join(s for n in offered for s in FORMATS[n].suffixes))
    return choose(name, output, offered)


def _extras(report, fmt: Format, plot: Path | None, quiet: bool, err, debug: bool, log=None) -> None:  # noqa: ANN001
    """What goes beside the main output: the job summary for github, the --plot figure (timed with --verbose)."""
    if fmt.step_summary:
        append_step_summary(step_summary(report), err)
    if plot is not None:
        from gradcheck_cli.render.plots import render_plot

        if not quiet and err.is_terminal:  # matplotlib's first import (font cache) can take seconds
            err.print(f"drawing plot {plot} ...", highlight=False, markup=False, soft_wrap=True)
        with timed(log, f"plot {plot}"):
            emit(lambda _: render_plot(report, plot.suffix.lower().lstrip(".")), "", plot, True, err, debug)
        if not quiet:
            err.print(f"plot written to {plot}", highlight=False, markup=False, soft_wrap=True)


def _check_outputs(output: Path | None, plot: Path | None) -> None:
    """Every file we will write is writable, and --plot can be drawn, before any work starts."""
    if output is not None:
        check_writable(output)
    if plot is not None:
        if plot.suffix.lower() not in (".png", ".svg"):
            raise UsageError(f"--plot {plot}: the file name must end in .png or .svg")
        from gradcheck_cli.render.plots import plots_available

        if not plots_available():
            raise UsageError("--plot needs matplotlib", hint="pip install 'gradcheck[plots]'")
        check_writable(plot, flag="--plot")


class SchemaDocument(str, Enum):
    report = "report"
    comparison = "comparison"


@app.command()
def compare(
    baseline: Annotated[Path, typer.Argument(metavar="BASELINE.json", help="The committed report to compare against.",
                                             show_default=False)],
    current: Annotated[Path, typer.Argument(metavar="CURRENT.json", help="This run's report (gradcheck analyze -o).",
                                            show_default=False)],
    tolerance: Annotated[float, typer.Option(
        "--tolerance", min=1.0, metavar="FACTOR",
        help="A layer regresses when its backward signal (relative to the output side) moves this many times "
             "further from the output side's level than in the baseline.")] = 2.0,
    dead_tolerance: Annotated[float, typer.Option(
        "--dead-tolerance", min=0.0, max=1.0, metavar="FRACTION",
        help="A rectifier layer regresses when its dead-unit ratio rises by more than this.")] = 0.1,
    fail_on: Annotated[Optional[str], typer.Option(
        "--fail-on", metavar="KINDS", show_default=False,
        help="New findings of these kinds fail the comparison (default: the current report's fail set).")] = None,
    format: Annotated[Optional[CompareFormat], typer.Option(  # noqa: A002 - the flag is --format
        "--format", "-F", show_default=False,
        help="table (default), json, markdown (PR comments) or github (annotations; also appends Markdown to "
             "$GITHUB_STEP_SUMMARY when set).")] = None,
    output: OutputOpt = None,
    show_all: Annotated[bool, typer.Option("--all", help="List unchanged layers too.")] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    color: ColorOpt = Color.auto,
    debug: DebugOpt = False,
) -> None:
    """Compare two JSON reports layer by layer; exit 1 if the current one regressed.

    Regressed: a layer's backward signal moved further towards vanishing/exploding than --tolerance
    allows, a rectifier layer's dead ratio rose by more than --dead-tolerance, or a finding in the fail
    set appeared. Exit codes: 0 not regressed, 1 regressed, 2 unreadable report or bad option.
    """
    colors = color_mode(_value(color))
    err = console(stderr=True, color=colors)
    log = log_line(err) if verbose else None
    output = _stdout_dash(output)
    with boundary(err, debug):
        from gradcheck_cli.analysis.options import parse_fail_on
        from gradcheck_cli.report.codec import load_report
        from gradcheck_cli.report.compare import compare as run_compare

        _check_verbosity(quiet, verbose)
        fmt = _choose_format(_value(format), output, offered=COMPARISON_FORMATS)
        if output is not None:
            check_writable(output)
        kinds = sorted(parse_fail_on(fail_on)) if fail_on is not None else None
        with timed(log, f"reading {baseline}"):
            old = load_report(baseline, "baseline report")
        with timed(log, f"reading {current}"):
            new = load_report(current, "current report")
        if log is not None:
            log(f"fail set: {','.join(kinds)}" if kinds is not None
                else f"fail set: the current report's ({','.join(new.run.fail_on) or 'none'})")
        with timed(log, "comparing"):
            result = run_compare(old, new, tolerance=tolerance, dead_tolerance=dead_tolerance, fail_on=kinds,
                                 names=(str(baseline), str(current)))

    with timed(log, f"rendering {fmt.name}"):
        emit(lambda _: fmt.comparison(result, show_all), result.verdict, output, quiet, err, debug,  # type: ignore[misc]
             colors)
    if fmt.step_summary:
        append_step_summary(step_summary(result), err)
    raise typer.Exit(result.exit_code)


@app.command()
def render(
    report_file: Annotated[Path, typer.Argument(metavar="REPORT.json", help="A report written by gradcheck analyze -o.",
                                                show_default=False)],
    format: FormatOpt = None,  # noqa: A002 - the flag is --format
    output: OutputOpt = None,
    plot: PlotOpt = None,
    depth: DepthOpt = None,
    only_findings: OnlyFindingsOpt = False,
    max_rows: MaxRowsOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    color: ColorOpt = Color.auto,
    debug: DebugOpt = False,
) -> None:
    """Render a saved JSON report in another format, without running the model again.

    For CI: analyse once (-o report.json), then render annotations, the HTML page or a PR comment
    from it. With only --plot, only the figure is written (add --format or -o for a rendering too).
    Exit codes: 0 rendered (whatever the report found), 2 unreadable report or bad option.
    """
    colors = color_mode(_value(color))
    err = console(stderr=True, color=colors)
    log = log_line(err) if verbose else None
    plot_only = plot is not None and format is None and output is None
    output = _stdout_dash(output)
    with boundary(err, debug):
        from gradcheck_cli.report.codec import load_report

        _check_verbosity(quiet, verbose)
        fmt = _choose_format(_value(format), output)
        _check_outputs(output, plot)
        with timed(log, f"reading {report_file}"):
            report = load_report(report_file)
        if log is not None and report.run.config:
            log(f"config: {report.run.config} (when the report was made)")
    if not plot_only:
        with timed(log, f"rendering {fmt.name}"):
            emit(lambda width: fmt.report(report, width, _view(depth, only_findings, max_rows)),
                 report.summary.verdict, output, quiet, err, debug, colors, wants_width=fmt.wants_width)
    _extras(report, fmt, plot, quiet, err, debug, log)


@app.command()
def schema(
    document: Annotated[SchemaDocument, typer.Argument(
        help="report: what analyze writes; comparison: what compare --format json writes.")] = SchemaDocument.report,
) -> None:
    """Print the JSON Schema (draft 2020-12) that every JSON document of that kind validates against."""
    import json

    from gradcheck_cli.report.schema import SCHEMAS

    typer.echo(json.dumps(SCHEMAS[document.value](), indent=2))


def main() -> None:
    """Console-script entry point (and ``python -m gradcheck_cli``): one command, then the process exits."""
    one_shot_process()
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("gradcheck: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)


__all__ = ["app", "main", "EXIT_INTERNAL", "EXIT_USAGE"]
