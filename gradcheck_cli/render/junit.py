"""JUnit XML: every check (finding kind) is a test case, so CI systems list what was checked.

A check fails when it found something in the fail set (one ``<failure>`` listing every layer);
findings outside the fail set, and findings silenced by ignore rules, are written to the case's
``<system-out>`` so they are visible without failing the build. The XML is built with
ElementTree (attribute and text escaping) after removing the control characters XML 1.0 forbids.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from gradcheck_cli.diagnose.registry import FINDING_KINDS, fails
from gradcheck_cli.render.training import step_note
from gradcheck_cli.report.model import Finding, Report

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _line(f: Finding) -> str:
    return f"[{f.severity}] {f.layer}{step_note(f)}: {f.message} (value {f.value:.4g}, threshold {f.threshold:.4g}). Fix: {f.hint}"


def render_junit(report: Report) -> str:
    fail_on = set(report.run.fail_on)
    suite = ET.Element("testsuite", name="gradcheck", tests=str(len(FINDING_KINDS)), errors="0", skipped="0")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("model", report.model.source), ("format", report.model.format), ("device", report.run.device),
                        ("verdict", report.summary.verdict), ("gradcheck_version", report.gradcheck_version)):
        ET.SubElement(properties, "property", name=name, value=_clean(value))
    failures = 0
    for kind in FINDING_KINDS:
        case = ET.SubElement(suite, "testcase", classname=_clean(f"gradcheck.{report.model.source}"), name=kind)
        found = [f for f in report.findings if f.kind == kind]
        ignored = [f for f in report.ignored_findings if f.kind == kind]
        if any(fails(f, fail_on) for f in found):
            failures += 1
            failure = ET.SubElement(case, "failure", type=kind,
                                    message=_clean(f"{len(found)} layer(s): {found[0].layer}{step_note(found[0])}: {found[0].message}"))
            failure.text = _clean("\n".join(_line(f) for f in found))
        elif found:
            ET.SubElement(case, "system-out").text = _clean("not in the fail set:\n" + "\n".join(_line(f) for f in found))
        if ignored:
            ET.SubElement(case, "system-err").text = _clean("ignored by ignore rules:\n" + "\n".join(_line(f) for f in ignored))
    suite.set("failures", str(failures))
    root = ET.Element("testsuites", name="gradcheck", tests=suite.get("tests"), failures=str(failures))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
