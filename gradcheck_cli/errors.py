"""One exception family for everything the user can get wrong, and every exit code, once.

Each error carries the exit code the CLI returns for it, so the CLI converts any
:class:`GradcheckError` into a one-line message and an exit code at a single boundary.
:data:`EXIT_CODES` documents every code (the README table, ``--help`` and the man page read it).
Import-light on purpose (no torch): ``gradcheck --help`` must stay fast.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_MODEL_FAILED = 3
EXIT_INTERNAL = 4
EXIT_INTERRUPTED = 130

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "success: analyze found nothing in the fail set, compare found no regression, render wrote the report"),
    (EXIT_FINDINGS, ("analyze: at least one finding in the fail set (--fail-on: a comma list of severities and kinds, all "
                     "or none; default error, every finding of severity error); compare: the current report regressed (a "
                     "layer past --tolerance or --dead-tolerance, or a new finding in the fail set)")),
    (EXIT_USAGE, ("bad invocation or unreadable input: unknown option value, config file error, missing/unknown/damaged "
                  "model file, refused pickle, data that does not fit, a file that is not a gradcheck JSON report")),
    (EXIT_MODEL_FAILED, "the model failed while running (its forward or backward raised, out of memory)"),
    (EXIT_INTERNAL, "internal error in gradcheck (please report it; --debug shows the traceback)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C); nothing is written"),
)
"""``(code, meaning)`` for every exit code gradcheck returns, in ascending order; the meaning is plain
text (no Markdown, no rich markup) so every consumer can render it as it needs."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if it has none): what a
    one-line error quotes of a library's multi-line explanation."""
    for line in str(exc).strip().splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


class GradcheckError(Exception):
    """Base class: a message for the user (what is wrong and what to do) and an exit code."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(GradcheckError):
    """Options that contradict each other or cannot be parsed."""


class ModelLoadError(GradcheckError):
    """The model file is missing, unreadable, of an unknown format or refused (untrusted pickle)."""


class InputError(GradcheckError):
    """The data sample or targets cannot be read or do not fit the model."""


class AnalysisError(GradcheckError):
    """The model itself failed while running (forward or backward raised, out of memory)."""

    exit_code = EXIT_MODEL_FAILED
