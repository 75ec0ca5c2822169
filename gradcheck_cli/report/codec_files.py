"""Reading saved JSON reports back: for ``gradcheck compare`` and ``gradcheck render``.

Errors say which file (baseline, current, report) is wrong and how to get a good one; a report
of another schema version is refused rather than half-understood.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gradcheck_cli.errors import InputError
from gradcheck_cli.report.model import SCHEMA_VERSION, Report


def load_report_json(path: Path, role: str = "report") -> dict[str, Any]:
    """A gradcheck JSON report, checked enough to compare: the right kind of file and schema version."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{role} {path} not found", hint="write one with: gradcheck analyze ... -o report.json") from None
    except IsADirectoryError:
        raise InputError(f"{role} {path} is a directory") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{role} {path} is not JSON ({exc})", hint="give a report written with -o report.json") from None
    except OSError as exc:
        raise InputError(f"cannot read {role} {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list) or "schema_version" not in data:
        raise InputError(f"{role} {path} is not a gradcheck JSON report", hint="write one with: gradcheck analyze ... -o report.json")
    if data["schema_version"] != SCHEMA_VERSION:
        raise InputError(f"{role} {path} has schema version {data['schema_version']!r}; this gradcheck reads {SCHEMA_VERSION}",
                         hint="regenerate the baseline with this version of gradcheck")
    return data


def load_report(path: Path, role: str = "report") -> Report:
    """A saved report as the :class:`Report` it was written from."""
    data = load_report_json(path, role)
    try:
        return Report.from_dict(data)
    except (ValueError, TypeError, KeyError, StopIteration) as exc:
        raise InputError(f"{role} {path} is not a valid gradcheck report: {exc}",
                         hint="check it with: gradcheck schema (JSON Schema)") from None
