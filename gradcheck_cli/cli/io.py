"""The command line's output plumbing: consoles, one-line errors, progress, atomic report files.

Used only by :mod:`gradcheck_cli.cli.app` (still the one place that prints); kept apart so the
command definitions read as commands. Nothing here imports torch.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
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


def emit(render, verdict: str, output: Path | None, quiet: bool, err, debug: bool) -> None:  # noqa: ANN001
    """Write the rendering to ``output`` atomically (then print the verdict) or print it to stdout.

    ``render(width)`` gets the console's width for stdout and None for files (full tables).
    """
    out = console()
    try:
        rendered = render(None if output is not None else out.width)
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


def console(stderr: bool = False):  # noqa: ANN202
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Not a terminal (CI logs, pipes): a fixed, generous width so tables never wrap mid-row.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(file=stream, width=width, stderr=stderr)


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
    def __init__(self, progress) -> None:  # noqa: ANN001
        self._progress = progress
        self._task = progress.add_task("starting", total=None)

    def stage(self, text: str) -> None:
        self._progress.update(self._task, description=text)

    def batch(self, done: int, total: int) -> None:
        self._progress.update(self._task, description=f"forward+backward {min(done + 1, total)}/{total}",
                              completed=done, total=total)


class progress:  # noqa: N801 - used as a context manager
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._rich = None

    def __enter__(self):  # noqa: ANN204
        if not self.enabled:
            return None
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._rich = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                              console=console(stderr=True), transient=True)
        self._rich.__enter__()
        return ProgressBar(self._rich)

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        if self._rich is not None:
            self._rich.__exit__(*exc)


def fail(console, exc: BaseException, debug: bool, code: int, prefix: str = "") -> None:  # noqa: ANN001
    if debug:
        console.print_exception()
    message = " ".join(str(exc).split()) or type(exc).__name__
    console.print(f"gradcheck: error: {prefix}{message}", style="red", highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(code)
