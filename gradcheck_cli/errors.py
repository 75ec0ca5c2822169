"""One exception family for everything the user can get wrong.

Each error carries the exit code the CLI returns for it, so the CLI converts any
:class:`GradcheckError` into a one-line message and an exit code at a single boundary.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_MODEL_FAILED = 3
EXIT_INTERRUPTED = 130


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
