"""Small traps of the command line (issue 18, item 7), each pinned: ``-o -``, a file suffix that contradicts
``--format``, comparing unrelated models, ``render --plot``, the plot's stage line, batches that ran out,
and ``--version``."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

FACTORY_SOURCE = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
"""


@pytest.fixture
def factory(tmp_path: Path) -> str:
    path = tmp_path / "factories.py"
    path.write_text(FACTORY_SOURCE)
    return f"{path}:build"


@pytest.fixture
def report_json(invoke, factory, tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    assert invoke("analyze", factory, "-s", "32,8", "-o", path, "-q").exit_code == 0
    return path


def _one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert result.stderr.count("gradcheck: error:") == 1 and "Traceback" not in result.output
    return result.stderr


# -- -o - is standard output --------------------------------------------------------------------------------------
def test_dash_output_is_stdout_for_every_command(invoke, factory, report_json, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    analyzed = invoke("analyze", factory, "-s", "32,8", "-o", "-", "-F", "json")
    assert analyzed.exit_code == 0, analyzed.output
    assert json.loads(analyzed.stdout)["run"]["samples"] == 32
    rendered = invoke("render", report_json, "-o", "-", "-F", "markdown")
    assert rendered.exit_code == 0 and rendered.stdout.startswith("###"), rendered.output
    compared = invoke("compare", report_json, report_json, "-o", "-", "-F", "json")
    assert compared.exit_code == 0 and json.loads(compared.stdout)["status"] == "unchanged"
    table = invoke("render", report_json, "-o", "-")  # no --format: the table, as without -o
    assert table.exit_code == 0 and "Layers (forward order)" in table.stdout
    assert not (tmp_path / "-").exists()


# -- a suffix that says another format ----------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["analyze", "render"])
def test_suffix_contradicting_format_is_a_usage_error(invoke, factory, report_json, tmp_path, command) -> None:
    source = [factory, "-s", "32,8"] if command == "analyze" else [report_json]
    target = tmp_path / "r.html"
    stderr = _one_line_error(invoke(command, *source, "-o", target, "--format", "json"))
    assert "r.html names a html file (.html) but --format is json" in stderr and "r.json" not in stderr
    assert not target.exists()
    assert "ending in .json" in stderr
    # agreeing suffixes, and plain .txt, take any format
    assert invoke(command, *source, "-o", tmp_path / "r.json", "--format", "json", "-q").exit_code in (0, 1)
    assert invoke(command, *source, "-o", tmp_path / "r.txt", "--format", "github", "-q").exit_code in (0, 1)
    assert (tmp_path / "r.txt").read_text().startswith("::")


def test_compare_refuses_a_suffix_it_cannot_write(invoke, report_json, tmp_path) -> None:
    target = tmp_path / "cmp.html"
    stderr = _one_line_error(invoke("compare", report_json, report_json, "-o", target))
    assert "cannot write html" in stderr and not target.exists()
    stderr = _one_line_error(invoke("compare", report_json, report_json, "-o", tmp_path / "cmp.md", "-F", "json"))
    assert "names a markdown file" in stderr


# -- compare of unrelated models ----------------------------------------------------------------------------------
def test_compare_of_reports_without_a_common_layer_is_refused(invoke, report_json, tmp_path) -> None:
    data = json.loads(report_json.read_text())
    for layer in data["layers"]:
        layer["name"] = f"other.{layer['name']}"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    stderr = _one_line_error(invoke("compare", report_json, other))
    assert "no layer name in common" in stderr and "other.0" in stderr
    # one shared name is enough to compare
    data["layers"][0]["name"] = "0"
    other.write_text(json.dumps(data))
    assert invoke("compare", report_json, other, "-q").exit_code in (0, 1)


# -- render --plot ------------------------------------------------------------------------------------------------
def test_render_plot_writes_only_the_plot(invoke, report_json, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    figure = tmp_path / "flow.svg"
    result = invoke("render", report_json, "--plot", figure)
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "plot written to" in result.stderr
    assert figure.read_text().lstrip().startswith("<?xml")
    both = invoke("render", report_json, "--plot", figure, "-F", "markdown")  # asked for: both
    assert both.exit_code == 0 and both.stdout.startswith("###")
    quiet = invoke("render", report_json, "--plot", figure, "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_plot_shows_a_stage_line_on_a_terminal_only(invoke, report_json, tmp_path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    import gradcheck_cli.cli.app as cli
    from rich.console import Console

    figure = tmp_path / "flow.png"
    piped = invoke("render", report_json, "--plot", figure)
    assert piped.exit_code == 0 and "drawing plot" not in piped.stderr  # CI logs: no progress chatter
    real = cli.console
    monkeypatch.setattr(cli, "console", lambda stderr=False, **_: (
        Console(file=sys.stderr, force_terminal=True, width=200, color_system=None) if stderr else real()))
    result = invoke("render", report_json, "--plot", figure)
    assert result.exit_code == 0, result.output
    assert result.stderr.index("drawing plot") < result.stderr.index("plot written to")
    assert invoke("render", report_json, "--plot", figure, "-q").stderr == ""  # quiet stays quiet


# -- batches that ran out -----------------------------------------------------------------------------------------
def test_fewer_batches_than_asked_are_noted(invoke, factory) -> None:
    result = invoke("analyze", factory, "-s", "16,8", "--batch-size", "16", "--batches", "4", "-F", "json")
    report = json.loads(result.stdout)
    assert report["run"]["batches"] == 1
    assert any(note.startswith("1 of the 4 requested batches ran: 16 samples") and "at least 64 samples" in note
               for note in report["notes"]), report["notes"]
    full = json.loads(invoke("analyze", factory, "-s", "64,8", "--batch-size", "16", "--batches", "4", "-F", "json").stdout)
    assert full["run"]["batches"] == 4 and not any("requested batches" in note for note in full["notes"])
    table = invoke("analyze", factory, "-s", "16,8", "--batch-size", "16", "--batches", "4")
    assert "1 of the 4 requested batches ran" in " ".join(table.stdout.split())


# -- --version ----------------------------------------------------------------------------------------------------
def test_version_names_torch_and_python_without_importing_torch() -> None:
    code = ("import sys\nfrom gradcheck_cli.cli.app import main\nsys.argv = ['gradcheck', '--version']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("gradcheck ")
    assert lines[1].startswith(f"torch {importlib.metadata.version('torch')} (")
    assert lines[2].startswith(f"python {platform.python_version()} ")
    import torch

    assert ("CPU build" in lines[1]) == (torch.version.cuda is None and torch.version.hip is None)
    if torch.version.cuda:
        assert f"CUDA {torch.version.cuda}" in lines[1]
