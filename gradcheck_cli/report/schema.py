"""The JSON Schema (draft 2020-12) of the report, derived from the report dataclasses themselves.

Deriving it (rather than writing it by hand) keeps it in step with ``report.py`` by
construction. Every float field may also be ``null`` with a sibling ``<field>_nonfinite``
("nan", "inf", "-inf"), which is how non-finite numbers are written.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from gradcheck_cli.diagnose.registry import FINDING_KINDS, SEVERITIES
from gradcheck_cli.report.model import SCHEMA_VERSION, Finding, Report

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def report_schema() -> dict[str, Any]:
    """What ``gradcheck analyze --format json`` writes."""
    schema = _object(Report)
    schema["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    return {"$schema": DIALECT, "$id": f"https://gradcheck.dev/schema/report-v{SCHEMA_VERSION}.json",
            "title": "gradcheck report", **schema}


def comparison_schema() -> dict[str, Any]:
    """What ``gradcheck compare --format json`` writes (versioned with the report)."""
    from gradcheck_cli.report.compare import Comparison

    return {"$schema": DIALECT, "$id": f"https://gradcheck.dev/schema/comparison-v{SCHEMA_VERSION}.json",
            "title": "gradcheck comparison", **_object(Comparison)}


SCHEMAS = {"report": report_schema, "comparison": comparison_schema}


def _object(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        annotation = hints[field.name]
        properties[field.name] = _type(annotation)
        if _mentions_float(annotation):
            properties[f"{field.name}_nonfinite"] = {"enum": NONFINITE}
        elif _float_list(annotation):
            properties[f"{field.name}_nonfinite"] = {"type": "object", "additionalProperties": {"enum": NONFINITE},
                                                     "propertyNames": {"pattern": "^[0-9]+$"}}
    # Fields with a default were added after the first release of their schema version: a report written
    # before they existed (same version, by the policy that additions do not bump it) must still validate.
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if cls is Finding:  # the vocabularies: the registry's kinds and severities
        properties["kind"] = {"enum": list(FINDING_KINDS)}
        properties["severity"] = {"enum": list(SEVERITIES)}
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


NONFINITE = ["nan", "inf", "-inf"]


def _float_list(annotation: Any) -> bool:
    """A list of floats (a training series), whose non-finite entries are marked by position."""
    return typing.get_origin(annotation) is list and _mentions_float(typing.get_args(annotation)[0])


def _mentions_float(annotation: Any) -> bool:
    return annotation is float or float in typing.get_args(annotation) and _is_optional(annotation)


def _is_optional(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


def _type(annotation: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [_type(a) for a in args if a is not type(None)]
        options = inner + ([{"type": "null"}] if type(None) in args else [])
        return options[0] if len(options) == 1 else {"anyOf": options}
    if dataclasses.is_dataclass(annotation):
        return _object(annotation)
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return {"type": "array", "items": _type(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type(args[1])}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:  # a non-finite float is written as null (plus the _nonfinite sibling)
        return {"type": ["number", "null"]}
    if annotation is str:
        return {"type": "string"}
    raise TypeError(f"no JSON Schema mapping for {annotation!r}")
