"""The command line's output plumbing: consoles, one-line errors, progress, atomic report files.

Used only by :mod:`gradcheck_cli.cli.app` (still the one place that prints); kept apart so the
command definitions read as commands. Nothing here imports torch.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import typer

from gradcheck_cli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, GradcheckError, UsageError


@contextmanager
def boundary(err, debug: bool) -> Iterator[None]:  # noqa: ANN001
    """Every command's error boundary: our errors and Ctrl-C as one line with their exit code, anything
    else as an internal error (exit 4) -- never a traceback unless --debug."""
    try:
        yield
    except GradcheckError as exc:
        fail(err, exc, debug, exc.exit_code)
    except KeyboardInterrupt:
        err.print("gradcheck: interrupted; nothing was written", style="yellow", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # noqa: BLE001 - last-resort boundary: a one-line message, not a traceback
        fail(err, exc, debug, EXIT_INTERNAL, prefix="internal error (please report it): ")


def emit(render, verdict: str, output: Path | None, quiet: bool, err, debug: bool,  # noqa: ANN001
         color: str | None = None, wants_width: bool = True) -> None:
    """Write the rendering to ``output`` atomically (then print the verdict) or print it to stdout.

    ``render(width)`` gets the console's width for stdout and None for files (full tables), or None when
    the format does not lay itself out to a width (``wants_width`` False: no console is asked, so rich is
    not imported); ``color`` is the resolved ``--color`` (:func:`color_mode`). Files never get colour.
    """
    out = console(color=color)
    try:
        rendered = render(out.width if output is None and wants_width else None)
        if output is not None:
            write_atomic(output, rendered if isinstance(rendered, (str, bytes)) else plain(rendered))
    except KeyboardInterrupt:
        err.print("gradcheck: interrupted; nothing was written", style="yellow", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except OSError as exc:  # disk full, directory removed meanwhile: the old report (if any) is intact
        fail(err, UsageError(f"cannot write {output}: {exc.strerror or exc}"), debug, EXIT_USAGE)
    except Exception as exc:  # noqa: BLE001 - same last-resort boundary as above
        fail(err, exc, debug, EXIT_INTERNAL, prefix="internal error (please report it): ")
    if output is not None:
        if not quiet:
            out.print(f"{verdict}\nreport written to {output}", highlight=False, soft_wrap=True)
    elif quiet:
        out.print(verdict, highlight=False, soft_wrap=True)
    elif isinstance(rendered, str):
        sys.stdout.write(rendered)
    else:
        out.print(rendered)


def append_step_summary(markdown: str, err) -> None:  # noqa: ANN001
    """``--format github`` in an Actions job: the Markdown report also goes to the job's summary page.

    The file is shared by every step of the job, so it is appended to, never replaced; failing to
    write it is a warning, not a reason to change the exit code.
    """
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")
    except OSError as exc:
        err.print(f"gradcheck: warning: cannot append to $GITHUB_STEP_SUMMARY ({path}): {exc.strerror or exc}",
                  style="yellow", highlight=False, markup=False, soft_wrap=True)


def plain(renderable) -> str:  # noqa: ANN001
    from rich.console import Console

    recorder = Console(width=160, record=True, file=open(os.devnull, "w"), color_system=None)  # noqa: SIM115
    recorder.print(renderable)
    return recorder.export_text()


def color_mode(flag: str | None, environ: Mapping[str, str] | None = None) -> str:
    """``--color`` resolved against the environment conventions: ``always``, ``never`` or ``auto``.

    An explicit ``--color always|never`` wins; else NO_COLOR (set, non-empty: https://no-color.org)
    means never; else FORCE_COLOR (set, non-empty, not ``0``: https://force-color.org) means always;
    else ``auto``: colour when the stream is a terminal.
    """
    environ = os.environ if environ is None else environ
    if flag in ("always", "never"):
        return flag
    if environ.get("NO_COLOR", ""):
        return "never"
    if environ.get("FORCE_COLOR", "") not in ("", "0"):
        return "always"
    return "auto"


def console(stderr: bool = False, color: str | None = None) -> LazyConsole:
    """A rich console on stdout (or stderr), made when first printed to. ``color`` (from
    :func:`color_mode`; None: the environment's conventions alone) decides the ANSI colours; whether the
    stream is a terminal (progress bar, width) stays what it really is, so ``--color always`` in a CI log
    colours the text without animating a progress bar there."""
    return LazyConsole(stderr, color_mode(None) if color is None else color)


_PIPE_WIDTH = 160
"""Not a terminal (CI logs, pipes): a fixed, generous width so tables never wrap mid-row."""


class LazyConsole:
    """A rich ``Console`` built on first use.

    Asking whether the stream is a terminal, or its width when that is the fixed width of a pipe, needs no
    rich; so a run that writes a string (JSON, Markdown, HTML) to a pipe or file and prints nothing else
    never imports rich (~25 ms of a whole process, measured).
    """

    def __init__(self, stderr: bool, color: str) -> None:
        self._stderr = stderr
        self._color = color
        self._stream = sys.stderr if stderr else sys.stdout
        self.is_terminal: bool = self._stream.isatty()
        self._console = None

    @property
    def width(self) -> int:
        fixed = _fixed_width(self.is_terminal)
        return fixed if fixed is not None else self.rich.width

    @property
    def rich(self):  # noqa: ANN201 - rich.console.Console, imported here
        if self._console is None:
            self._console = _rich_console(self._stream, self._stderr, self.is_terminal, self._color)
        return self._console

    def __getattr__(self, name: str):  # noqa: ANN204 - print, print_exception, file ...: the real console's
        if name.startswith("_"):  # never delegated: no recursion through a half-built instance (copy, pickle)
            raise AttributeError(name)
        return getattr(self.rich, name)


def _fixed_width(tty: bool) -> int | None:
    """The pipe width, or None where rich measures it (a terminal, or ``COLUMNS`` set)."""
    return None if tty or os.environ.get("COLUMNS") else _PIPE_WIDTH


def _rich_console(stream, stderr: bool, tty: bool, color: str):  # noqa: ANN001, ANN202
    from rich.console import Console

    width = _fixed_width(tty)
    if color == "never":
        system = None
    elif color == "always":
        system = "auto" if tty else ("truecolor" if os.environ.get("COLORTERM") in ("truecolor", "24bit") else "256")
    else:
        system = "auto" if tty else None
    return Console(file=stream, width=width, stderr=stderr, force_terminal=tty, color_system=system,
                   no_color=False)  # NO_COLOR is read once, by color_mode


def log_line(err) -> Callable[[str], None]:  # noqa: ANN001
    """``--verbose``: a detail line on stderr, ``gradcheck: TEXT``, dim."""
    from rich.text import Text

    def log(text: str) -> None:  # the style on the Text, not the call: a live bar re-drawn below stays as it is
        err.print(Text(f"gradcheck: {text}", style="dim"), highlight=False, soft_wrap=True)
    return log


@contextmanager
def timed(log: Callable[[str], None] | None, label: str) -> Iterator[None]:
    """``--verbose``: ``gradcheck: LABEL: 0.12 s`` once the block has run (nothing without ``log``)."""
    began = time.perf_counter()
    yield
    if log is not None:
        log(f"{label}: {time.perf_counter() - began:.2f} s")


def check_writable(path: Path, flag: str = "--output") -> None:
    """Fail before the (possibly long) analysis if the report could not be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a directory", hint="give a file name")
    if not parent.is_dir():
        raise UsageError(f"cannot write {flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write {flag} {path}: permission denied")


def file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would give: the old file's, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomic(path: Path, content: str | bytes) -> None:
    """Temp file in the same directory, then rename: readers never see a half-written report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.chmod(tmp, file_mode(path))  # mkstemp makes 0600; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ProgressBar:
    """The engine's progress observer: a transient bar on a terminal and/or, with ``--verbose``, one line per
    phase as it ends with its time (printed through the bar's console while it is live, so they do not tear)."""

    def __init__(self, progress, log: Callable[[str], None] | None = None) -> None:  # noqa: ANN001
        self._progress = progress
        self._task = progress.add_task("starting", total=None) if progress is not None else None
        self._log = log
        self._phase: str | None = None
        self._began = self._start = time.perf_counter()

    def stage(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)
        self._next(text)

    def batch(self, done: int, total: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"forward+backward {min(done + 1, total)}/{total}",
                                  completed=done, total=total)
        phase = f"forward+backward ({total} batch{'es' if total != 1 else ''})"
        if self._phase != phase:
            self._next(phase)

    def finish(self) -> None:
        """The last phase's line and the total (``--verbose``)."""
        self._next(None)
        if self._log is not None:
            self._log(f"analysis: {time.perf_counter() - self._start:.2f} s in all")

    def _next(self, phase: str | None) -> None:
        now = time.perf_counter()
        if self._log is not None and self._phase is not None:
            self._log(f"{self._phase}: {now - self._began:.2f} s")
        self._phase, self._began = phase, now


class progress:  # noqa: N801 - used as a context manager
    """The bar (``enabled``: stderr is a terminal and not --quiet) and the ``--verbose`` phase lines."""

    def __init__(self, enabled: bool, verbose: bool = False, color: str | None = None) -> None:
        self.enabled = enabled
        self._verbose = verbose
        self._color = color
        self._rich = None
        self._bar: ProgressBar | None = None

    def __enter__(self):  # noqa: ANN204
        if not self.enabled and not self._verbose:
            return None
        err = console(stderr=True, color=self._color)
        if self.enabled:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._rich = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                                  console=err.rich, transient=True)
            self._rich.__enter__()
        self._bar = ProgressBar(self._rich, log_line(err) if self._verbose else None)  # lines print above the bar
        return self._bar

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        if self._bar is not None and exc[0] is None:
            self._bar.finish()
        if self._rich is not None:
            self._rich.__exit__(*exc)


def fail(console, exc: BaseException, debug: bool, code: int, prefix: str = "") -> None:  # noqa: ANN001
    if debug:
        console.print_exception()
    message = " ".join(str(exc).split()) or type(exc).__name__
    console.print(f"gradcheck: error: {prefix}{message}", style="red", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(code)
