"""Every finding kind is complete: a rule, thresholds that exist, a hint, README and schema entries."""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from gradcheck_cli.analysis.options import Thresholds
from gradcheck_cli.diagnose.registry import FINDING_KINDS, KINDS, SEVERITIES
from gradcheck_cli.report.schema import report_schema

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
RULES = Path(importlib.import_module("gradcheck_cli.diagnose.rules").__file__).parent


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kind_is_complete(kind) -> None:  # noqa: ANN001
    assert (RULES / f"{kind.name}.py").is_file() and callable(kind.rule)
    assert kind.severity in SEVERITIES and kind.hint and kind.meaning
    known = {f.name for f in dataclasses.fields(Thresholds)}
    assert set(kind.thresholds) <= known, set(kind.thresholds) - known
    assert re.search(rf"`{kind.name}`", README), f"{kind.name} is not documented in the README"
    finding = report_schema()["properties"]["findings"]["items"]["properties"]["kind"]
    assert kind.name in finding["enum"]


def test_every_rule_module_is_registered() -> None:
    modules = {p.stem for p in RULES.glob("*.py") if not p.stem.startswith("_")} - {"depth"}
    assert modules == set(FINDING_KINDS)


def test_every_threshold_belongs_to_a_kind() -> None:
    used = {name for kind in KINDS for name in kind.thresholds}
    assert {f.name for f in dataclasses.fields(Thresholds)} == used
