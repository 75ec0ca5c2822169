"""The report's JSON form, both ways: encoding dataclasses, decoding them, and reading saved files.

Floats are rounded to 7 significant digits (so a report is byte-identical across runs that agree to
float32 precision), and a non-finite float becomes ``null`` plus a sibling ``<key>_nonfinite`` field
(``"nan"``, ``"inf"``, ``"-inf"``); in a list (a training series) the sibling maps positions to those
words (``{"3": "inf"}``), so the output is always valid JSON and reads back as it was. Decoding ignores keys it does not
know, so reports from later releases of the same schema version still load; a report of another
schema version is refused rather than half-understood, and errors say which file (baseline, current,
report) is wrong and how to get a good one.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

from gradcheck_cli.errors import InputError
from gradcheck_cli.report.model import SCHEMA_VERSION, Report


def to_json(value: Any) -> str:
    """A report (or comparison) as the JSON text the tool writes."""
    return json.dumps(encode(value), indent=2, allow_nan=False) + "\n"


def _round(x: float) -> float:
    return float(f"{x:.7g}")


def encode(value: Any) -> Any:
    """Dataclasses, dicts, lists and floats -> JSON-ready objects (the rounding and non-finite rules above)."""
    if is_dataclass(value):
        out: dict[str, Any] = {}
        for f in fields(value):
            _put(out, f.name, getattr(value, f.name))
        return out
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            _put(out, str(key), item)
        return out
    if isinstance(value, (list, tuple, frozenset)):
        return [encode(v) for v in value]
    if isinstance(value, float):
        return _round(value) if math.isfinite(value) else None
    return value


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        out[key] = None
        out[f"{key}_nonfinite"] = _kind(value)
        return
    out[key] = encode(value)
    if isinstance(value, list):  # a series: its non-finite entries by position ({"3": "inf"})
        marks = {str(i): _kind(v) for i, v in enumerate(value) if isinstance(v, float) and not math.isfinite(v)}
        if marks:
            out[f"{key}_nonfinite"] = marks


def _kind(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def decode(cls: type, data: Any) -> Any:
    """A JSON object -> the dataclass ``cls``, guided by its type hints (``null`` + ``<key>_nonfinite``
    becomes the non-finite float again)."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} must be an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in fields(cls):
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{cls.__name__} lacks the key {f.name!r}")
            continue
        values[f.name] = _decode(hints[f.name], data[f.name], data.get(f"{f.name}_nonfinite"))
    return cls(**values)


def _decode(annotation: Any, value: Any, nonfinite: Any = None) -> Any:
    if nonfinite in ("nan", "inf", "-inf"):
        return float(nonfinite)
    if value is None:
        return None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _decode(next(a for a in args if a is not type(None)), value)
    if is_dataclass(annotation):
        return decode(annotation, value)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {type(value).__name__}")
        marks = nonfinite if isinstance(nonfinite, dict) else {}
        items = [_decode(args[0], v, marks.get(str(i))) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected an object, got {type(value).__name__}")
        return {k: _decode(args[1], v, value.get(f"{k}_nonfinite")) for k, v in value.items() if not k.endswith("_nonfinite")}
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value

def read_document(path: Path, role: str = "report") -> dict[str, Any]:
    """A gradcheck JSON report as parsed JSON, checked for the right kind of file and schema version."""
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
    data = read_document(path, role)
    try:
        return decode(Report, data)
    except (ValueError, TypeError, KeyError, StopIteration) as exc:
        raise InputError(f"{role} {path} is not a valid gradcheck report: {exc}",
                         hint="check it with: gradcheck schema (JSON Schema)") from None
