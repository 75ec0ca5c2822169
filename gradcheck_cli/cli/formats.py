"""The format choices of the command line, as the enums typer needs, built from the one format table.

``analyze`` and ``render`` offer every format, ``compare`` those that can show a comparison
(:data:`gradcheck_cli.render.formats.COMPARISON_FORMATS`); nothing here prints or renders.
"""

from __future__ import annotations

from enum import Enum

from gradcheck_cli.render.formats import COMPARISON_FORMATS, REPORT_FORMATS

OutputFormat = Enum("OutputFormat", {name: name for name in REPORT_FORMATS}, type=str)
"""``--format`` of ``analyze`` and ``render``."""
CompareFormat = Enum("CompareFormat", {name: name for name in COMPARISON_FORMATS}, type=str)
"""``--format`` of ``compare``."""
