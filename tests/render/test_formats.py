"""Every output format: each enum member renders, the suffix picks it, and the CI formats
(GitHub annotations, JUnit XML) are well-formed even for hostile layer names."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET

import pytest
import torch
from conftest import EXAMPLES, chain

from gradcheck_cli import analyze
from gradcheck_cli.cli.formats import CompareFormat, OutputFormat
from gradcheck_cli.diagnose.registry import FINDING_KINDS
from gradcheck_cli.render.formats import COMPARISON_FORMATS, FORMATS, REPORT_FORMATS, choose
from gradcheck_cli.render.github import render_github
from gradcheck_cli.render.junit import render_junit

HOSTILE = "evil\n::error title=x::injected\r%0A<b>&\x00\x1b[31m"


@pytest.fixture(scope="module")
def exploding():
    """30 Linear(1,1) layers of weight 5: the backward signal grows 5x per layer (exit 1)."""
    return analyze(chain(30, 5.0), torch.randn(64, 1))


@pytest.fixture(scope="module")
def sigmoid():
    import models  # examples/models.py

    return analyze(models.deep_sigmoid_mlp(), torch.randn(64, 64), fail_on="none")


def _hostile(report):
    findings = [dataclasses.replace(f, layer=HOSTILE + f.layer, message=HOSTILE) for f in report.findings]
    return dataclasses.replace(report, findings=findings)


def _render(report, fmt, width):  # noqa: ANN001, ANN202
    return FORMATS[fmt.value].report(report, width)


def test_every_format_has_a_renderer_and_a_suffix_or_flag(exploding, tmp_path) -> None:
    assert [f.value for f in OutputFormat] == list(REPORT_FORMATS) == list(FORMATS)
    assert [f.value for f in CompareFormat] == list(COMPARISON_FORMATS)
    for fmt in OutputFormat:
        rendered = _render(exploding, fmt, width=None)
        assert rendered is not None and (not isinstance(rendered, str) or rendered.strip()), fmt
    for name, fmt in FORMATS.items():
        assert fmt.suffixes or name == "github"  # annotations only go to stdout
        for suffix in fmt.suffixes:
            assert choose(None, tmp_path / f"report{suffix}") is fmt
    assert choose(None, tmp_path / "report.unknown").name == "json" and choose(None, None).name == "table"
    assert choose(None, tmp_path / "c.html", offered=COMPARISON_FORMATS).name == "json"  # compare has no HTML


def test_github_annotations(exploding, sigmoid) -> None:
    lines = render_github(exploding).splitlines()
    assert lines[0].startswith("::error title=gradcheck exploding_gradient%3A ")  # in the fail set: an error
    assert lines[-1].startswith("::error title=gradcheck::FAIL")
    quiet = render_github(sigmoid).splitlines()  # fail_on none: the step passes, an error is still an error
    assert quiet[0].startswith("::error title=gradcheck vanishing_gradient")  # the level is the severity
    assert any(line.startswith("::warning title=gradcheck vanishing_activation") for line in quiet)
    assert any(line.startswith("::notice title=gradcheck not_zero_centred") for line in quiet)
    assert quiet[-1].startswith("::notice title=gradcheck::")


def test_github_annotations_cannot_be_injected(exploding) -> None:
    text = render_github(_hostile(exploding))
    lines = text.splitlines()
    assert len(lines) == len(render_github(exploding).splitlines())  # no line was split by a name
    assert all(line.startswith(("::error title=", "::warning title=", "::notice title=")) for line in lines)
    assert "\r" not in text and "%0A::error title=x::injected%0D%250A" in text


def test_junit_one_case_per_check(exploding, sigmoid) -> None:
    root = ET.fromstring(render_junit(exploding))
    suite = root.find("testsuite")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == list(FINDING_KINDS)
    failed = {name for name, case in cases.items() if case.find("failure") is not None}
    assert failed == {"exploding_gradient", "exploding_activation"}  # the errors, under the default gate
    assert suite.get("failures") == "2" == root.get("failures")
    assert "init_mismatch" in {n for n, c in cases.items() if c.find("system-out") is not None}
    sigmoid_root = ET.fromstring(render_junit(sigmoid))
    assert sigmoid_root.get("failures") == "0"


def test_junit_survives_hostile_names(exploding) -> None:
    root = ET.fromstring(render_junit(_hostile(exploding)))  # parses: control characters were replaced
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and "<b>&" in failure.text and "\x00" not in failure.text


def test_suffixes_choose_the_format(invoke, tmp_path) -> None:
    model = f"{EXAMPLES / 'models.py'}:deep_sigmoid_mlp"
    for suffix, check in [(".xml", lambda t: ET.fromstring(t).tag == "testsuites"),
                          (".json", lambda t: json.loads(t)["schema_version"] == 1),
                          (".md", lambda t: t.startswith("### ")),
                          (".html", lambda t: t.lstrip().lower().startswith("<!doctype html>"))]:
        out = tmp_path / f"report{suffix}"
        result = invoke("analyze", model, "-s", "32,64", "-o", out, "--fail-on", "none")
        assert result.exit_code == 0, result.output
        assert check(out.read_text()), suffix


def test_github_format_appends_the_markdown_summary(invoke, tmp_path, monkeypatch) -> None:
    summary = tmp_path / "step_summary"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    model = f"{EXAMPLES / 'models.py'}:deep_sigmoid_mlp"
    for _ in range(2):
        result = invoke("analyze", model, "-s", "32,64", "-F", "github")
        assert result.exit_code == 1 and result.stdout.startswith("::error")
    assert summary.read_text().count("### ❌ gradcheck") == 2
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "missing" / "dir"))
    result = invoke("analyze", model, "-s", "32,64", "-F", "github")
    assert result.exit_code == 1 and "cannot append to $GITHUB_STEP_SUMMARY" in result.stderr


# --- gradcheck render: a saved report, re-rendered ------------------------------------------------


def test_saved_report_round_trips(exploding, sigmoid, tmp_path) -> None:
    from gradcheck_cli.report.model import Report

    nan_model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    with torch.no_grad():
        nan_model[0].weight[0, 0] = float("nan")
    nonfinite = analyze(nan_model, torch.randn(8, 4), ignore=["2:all"])
    for report in (exploding, sigmoid, nonfinite):
        document = json.loads(report.to_json())
        again = Report.from_dict(document)
        assert again.to_dict() == document
        for fmt in OutputFormat:  # the re-read report renders exactly as the original (floats were rounded alike)
            if fmt is not OutputFormat.table:
                assert _render(again, fmt, None) == _render(Report.from_dict(json.loads(again.to_json())), fmt, None)


def test_render_command(invoke, exploding, tmp_path) -> None:
    saved = tmp_path / "report.json"
    saved.write_text(exploding.to_json())
    github = invoke("render", saved, "-F", "github")
    assert github.exit_code == 0 and github.stdout == render_github(exploding)  # rendering is not gating
    out = tmp_path / "report.xml"
    assert invoke("render", saved, "-o", out, "-q").exit_code == 0 and out.read_text() == render_junit(exploding)
    table = invoke("render", saved)
    assert table.exit_code == 0 and "exploding_gradient" in table.stdout
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**json.loads(exploding.to_json()), "summary": 3}))
    for path, message in [(broken, "not a valid gradcheck report"), (tmp_path / "none.json", "not found")]:
        result = invoke("render", path)
        assert result.exit_code == 2 and message in result.stderr and result.stderr.count("gradcheck: error:") == 1


def test_plot_option(invoke, exploding, tmp_path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    model = f"{EXAMPLES / 'models.py'}:deep_sigmoid_mlp"
    png, svg = tmp_path / "flow.png", tmp_path / "flow.svg"
    result = invoke("analyze", model, "-s", "32,64", "--plot", png, "-o", tmp_path / "r.md")
    assert result.exit_code == 1 and png.read_bytes().startswith(b"\x89PNG") and "plot written" in result.stderr
    saved = tmp_path / "r.json"
    saved.write_text(exploding.to_json())
    assert invoke("render", saved, "--plot", svg, "-q").exit_code == 0 and b"<svg" in svg.read_bytes()
    bad = invoke("analyze", model, "-s", "32,64", "--plot", tmp_path / "flow.pdf")
    assert bad.exit_code == 2 and "must end in .png or .svg" in bad.stderr


def test_plot_without_matplotlib_fails_before_the_run(invoke, tmp_path, monkeypatch) -> None:
    import gradcheck_cli.render.plots as plots

    monkeypatch.setattr(plots, "plots_available", lambda: False)
    result = invoke("analyze", f"{EXAMPLES / 'models.py'}:no_such_factory", "-s", "4,4", "--plot", tmp_path / "f.png")
    assert result.exit_code == 2 and "--plot needs matplotlib" in result.stderr and "gradcheck[plots]" in result.stderr
    assert not (tmp_path / "f.png").exists()
