"""``analyze --steps`` through the command line: exit codes, the JSON schema, the model file untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gradcheck_cli.cli.app import app
from gradcheck_cli.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE
from gradcheck_cli.report.schema import report_schema


@pytest.fixture()
def scripted(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "mlp.ts"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                                                  nn.Linear(64, 1))), path)
    return path


def _run(*args: str):  # noqa: ANN202
    return CliRunner().invoke(app, ["analyze", *args], catch_exceptions=False)


def test_a_diverging_run_fails_the_build_and_leaves_the_model_file_as_it_was(scripted: Path, tmp_path: Path) -> None:
    digest = hashlib.sha256(scripted.read_bytes()).hexdigest()
    out = tmp_path / "run.json"
    result = _run(str(scripted), "-s", "64,16", "--steps", "30", "--optimizer", "sgd", "--lr", "3", "-o", str(out), "-q")
    assert result.exit_code == EXIT_FINDINGS, result.output
    assert hashlib.sha256(scripted.read_bytes()).hexdigest() == digest
    document = json.loads(out.read_text())
    jsonschema.validate(document, report_schema())
    training = document["training"]
    assert training["optimizer"] == "sgd" and training["lr"] == 3.0
    assert training["completed"] < 30  # stopped at the non-finite loss
    kinds = {f["kind"] for f in document["findings"] if f["step"] is not None}
    assert {"diverging_loss", "nonfinite"} <= kinds


def test_a_healthy_run_passes_and_reports_its_series(scripted: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    result = _run(str(scripted), "-s", "64,16", "--steps", "40", "--every", "10", "--lr", "1e-3", "-o", str(out), "-q")
    assert result.exit_code == EXIT_OK, result.output
    training = json.loads(out.read_text())["training"]
    assert training["logged_steps"] == [0, 10, 20, 30, 39]
    assert len(training["loss"]) == 40 and len(training["grad_norm"]) == 5
    assert {s["name"] for s in training["layers"]} >= {"0", "2", "4"}
    assert all(len(s["grad_rms"]) == 5 for s in training["layers"])


def test_fail_on_a_training_kind_gates_it(scripted: Path) -> None:
    args = [str(scripted), "-s", "64,16", "--steps", "50", "--optimizer", "sgd", "--lr", "0.5", "-q"]
    assert _run(*args).exit_code == EXIT_OK  # dying_relu is a warning: outside the default gate
    assert _run(*args, "--fail-on", "dying_relu").exit_code == EXIT_FINDINGS


@pytest.mark.parametrize(("flags", "message"), [
    (["--every", "5"], "--every needs --steps N"),
    (["--lr", "0.1"], "--lr needs --steps N"),
    (["--lr-scan"], "--lr-scan needs --steps N"),
    (["--steps", "5", "--optimizer", "adam", "--momentum", "0.9"], "--momentum applies to --optimizer sgd only"),
    (["--steps", "0"], "Invalid value for '--steps'"),
])
def test_training_flags_out_of_place_are_one_line_usage_errors(scripted: Path, flags: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["analyze", str(scripted), "-s", "4,16", *flags])
    assert result.exit_code == EXIT_USAGE
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


def test_training_settings_come_from_the_config_file(scripted: Path, tmp_path: Path) -> None:
    config = tmp_path / "gradcheck.toml"
    config.write_text('steps = 12\nevery = 4\noptimizer = "sgd"\nlr = 0.01\n')
    out = tmp_path / "run.json"
    result = _run(str(scripted), "-s", "8,16", "--config", str(config), "-o", str(out), "-q")
    assert result.exit_code == EXIT_OK, result.output
    training = json.loads(out.read_text())["training"]
    assert (training["steps"], training["every"], training["optimizer"], training["lr"]) == (12, 4, "sgd", 0.01)
