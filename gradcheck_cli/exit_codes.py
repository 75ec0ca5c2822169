"""The documented exit codes: one table, read by the man page generator (``scripts/gen_man.py``).

Each entry is ``(code, meaning)``; the meaning is plain text (no Markdown, no rich markup) so
every consumer -- README table, ``--help`` text, man page -- can render it as it needs. The codes
themselves are defined where they are raised (``gradcheck_cli.errors``, ``gradcheck_cli.cli``);
``tests/test_man.py`` checks that every one of them is documented here.

Import-light on purpose (no torch, nothing from the CLI): ``gradcheck --help`` must stay fast.
"""

from __future__ import annotations

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "success: analyze found nothing in the fail set, compare found no regression, render wrote the report"),
    (1, ("analyze: at least one finding in the fail set (--fail-on: comma list of kinds, all or none; default "
         "exploding_gradient,nonfinite); compare: the current report regressed (a layer past --tolerance or "
         "--dead-tolerance, or a new finding in the fail set)")),
    (2, ("bad invocation or unreadable input: unknown option value, config file error, missing/unknown/damaged "
         "model file, refused pickle, data that does not fit, a file that is not a gradcheck JSON report")),
    (3, "the model failed while running (its forward or backward raised, out of memory)"),
    (4, "internal error in gradcheck (please report it; --debug shows the traceback)"),
    (130, "interrupted (Ctrl-C); nothing is written"),
)
"""``(code, meaning)`` for every exit code gradcheck returns, in ascending order."""

__all__ = ["EXIT_CODES"]
