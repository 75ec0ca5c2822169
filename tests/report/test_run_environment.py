"""Reproducibility (issue 18, item 8): the caller's RNG is left alone, the run records the machine it ran on
(threads, versions, device), older reports without those fields still load, and ``compare`` notes a
different machine without ever failing for it."""

from __future__ import annotations

import contextlib
import json
import platform
from pathlib import Path

import pytest
import torch
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.errors import InputError
from gradcheck_cli.report.codec import load_report
from gradcheck_cli.report.compare import compare

ENVIRONMENT = ("threads", "torch_version", "python_version", "cuda_version", "device_name")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 4))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("env") / "report.json"
    path.write_text(analyze(_model(), torch.randn(64, 8, generator=torch.Generator().manual_seed(0))).to_json())
    return path


def _edited(saved: Path, folder: Path, name: str, **run) -> Path:
    data = json.loads(saved.read_text())
    for key, value in run.items():
        if value is None:
            data["run"].pop(key, None)
        else:
            data["run"][key] = value
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def test_analyze_leaves_the_callers_global_rng_as_it_was(monkeypatch) -> None:
    import gradcheck_cli.analysis.engine as engine

    model = _model()
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    analyze(model, input_shapes=[(16, 8)])  # random inputs and dropout both draw from the RNG
    assert torch.equal(before, torch.get_rng_state())
    # not vacuous: without the guard the analysis does move the global generator
    monkeypatch.setattr(engine, "_rng_kept", lambda device: contextlib.nullcontext())
    analyze(model, input_shapes=[(16, 8)])
    assert not torch.equal(before, torch.get_rng_state())


def test_run_records_threads_versions_and_device(saved) -> None:
    run = json.loads(saved.read_text())["run"]
    assert run["threads"] == torch.get_num_threads() >= 1
    assert run["torch_version"] == torch.__version__
    assert run["python_version"] == platform.python_version()
    assert run["cuda_version"] == torch.version.cuda
    assert run["device"] == "cpu" and (run["device_name"] is None or run["device_name"].strip())


def test_run_threads_follow_torch_settings() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert analyze(_model(), torch.randn(8, 8)).run.threads == 1
    finally:
        torch.set_num_threads(threads)


def test_a_report_from_before_the_environment_fields_still_loads(saved, tmp_path) -> None:
    old = _edited(saved, tmp_path, "old.json", **{key: None for key in ENVIRONMENT})
    assert not set(ENVIRONMENT) & set(json.loads(old.read_text())["run"])
    report = load_report(old, "baseline")
    assert all(getattr(report.run, key) is None for key in ENVIRONMENT)
    result = compare(report, load_report(saved, "current"))
    assert result.status == "unchanged" and not any("environment" in note for note in result.notes)


def test_compare_notes_another_machine_but_never_fails_for_it(saved, tmp_path) -> None:
    other = _edited(saved, tmp_path, "other.json", threads=7, torch_version="2.99.0", device_name="Another CPU")
    result = compare(load_report(saved, "baseline"), load_report(other, "current"))
    assert result.status == "unchanged" and result.exit_code == 0
    [note] = [n for n in result.notes if n.startswith("environment differs")]
    run = load_report(saved).run
    assert f"threads {run.threads} -> 7" in note and f"torch {run.torch_version} -> 2.99.0" in note
    assert "device" in note and "python" not in note  # only what differs
    same = compare(load_report(saved, "baseline"), load_report(saved, "current"))
    assert not any(n.startswith("environment differs") for n in same.notes)


def test_compare_refuses_reports_without_a_common_layer(saved, tmp_path) -> None:
    data = json.loads(saved.read_text())
    for layer in data["layers"]:
        layer["name"] = "x" + layer["name"]
    other = tmp_path / "unrelated.json"
    other.write_text(json.dumps(data))
    with pytest.raises(InputError, match="no layer name in common"):
        compare(load_report(saved, "baseline"), load_report(other, "current"), names=("a.json", "b.json"))
