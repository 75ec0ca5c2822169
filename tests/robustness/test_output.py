"""--output is all or nothing (no partial file, no temp file, an old report left alone on failure),
Ctrl-C exits 130, and reports are byte-identical across runs for every model format."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from robust_helpers import build_model, onnx_bytes, write_factory

OLD = "previous report, must survive a failed run\n"


def _leftovers(directory: Path, name: str) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(f".{name}.")]


@pytest.mark.parametrize("preexisting", [False, True])
@pytest.mark.parametrize("fn,code", [("boom", 3), ("interrupt", 130), ("frozen", 3)])
def test_failed_or_interrupted_run_writes_nothing(invoke, tmp_path, fn, code, preexisting):
    factory = write_factory(tmp_path)
    out = tmp_path / "report.json"
    if preexisting:
        out.write_text(OLD)
    result = invoke("analyze", f"{factory}:{fn}", "-s", "4,8", "-o", out)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    if fn == "interrupt":
        assert "interrupted" in result.stderr and "nothing was written" in result.stderr
    assert (out.read_text() == OLD) if preexisting else not out.exists()
    assert _leftovers(tmp_path, out.name) == []
    assert "report written" not in result.stdout


def test_successful_run_replaces_the_old_report(invoke, tmp_path):
    factory = write_factory(tmp_path)
    out = tmp_path / "report.json"
    out.write_text(OLD)
    result = invoke("analyze", f"{factory}:build", "-s", "4,8", "-o", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["schema_version"] == 1
    assert _leftovers(tmp_path, out.name) == []


def test_reports_get_ordinary_file_permissions(invoke, tmp_path):
    """The temp file behind the atomic write is 0600; the report must not be (CI artifacts, web servers)."""
    import os

    factory = write_factory(tmp_path)
    old_umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.json"
        assert invoke("analyze", f"{factory}:build", "-s", "4,8", "-o", fresh).exit_code == 0
        assert fresh.stat().st_mode & 0o777 == 0o644
        kept = tmp_path / "kept.json"
        kept.write_text(OLD)
        kept.chmod(0o640)
        assert invoke("analyze", f"{factory}:build", "-s", "4,8", "-o", kept).exit_code == 0
        assert kept.stat().st_mode & 0o777 == 0o640  # an existing report keeps its mode
    finally:
        os.umask(old_umask)


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_failure_while_writing_leaves_no_temp_file(invoke, tmp_path, monkeypatch, failure):
    """The rename is the last step: a Ctrl-C or a full disk there leaves the old report and no temp file."""
    import gradcheck_cli.cli.io as cli_io

    factory = write_factory(tmp_path)
    out = tmp_path / "report.json"
    out.write_text(OLD)

    def replace(src, dst):
        assert Path(src).exists()  # the temp file was written next to the target
        raise KeyboardInterrupt if failure is KeyboardInterrupt else OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli_io.os, "replace", replace)
    result = invoke("analyze", f"{factory}:build", "-s", "4,8", "-o", out)
    assert out.read_text() == OLD
    assert _leftovers(tmp_path, out.name) == []
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    if failure is KeyboardInterrupt:
        assert result.exit_code == 130 and "interrupted" in result.stderr
    else:
        assert result.exit_code == 2
        assert result.stderr.startswith("gradcheck: error: cannot write ") and "No space left" in result.stderr


def _model_files(tmp_path: Path) -> dict[str, Path]:
    model = build_model()
    files = {"ts": tmp_path / "m.ts", "pt2": tmp_path / "m.pt2", "onnx": tmp_path / "m.onnx"}
    torch.jit.save(torch.jit.script(model), files["ts"])
    torch.export.save(torch.export.export(model, (torch.randn(4, 8),)), files["pt2"])
    files["onnx"].write_bytes(onnx_bytes())
    return files


@pytest.mark.parametrize("kind", ["ts", "pt2", "onnx"])
def test_same_model_input_and_seed_give_byte_identical_json(invoke, tmp_path, kind):
    path = _model_files(tmp_path)[kind]
    data = [] if kind == "pt2" else ["-s", "16,8"]  # torch.export: shapes from the stored example inputs
    runs = [invoke("analyze", path, *data, "-F", "json", "--seed", str(seed)) for seed in (3, 3, 4)]
    assert all(r.exit_code == 0 for r in runs), [r.output for r in runs]
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout != runs[2].stdout  # the seed does reach the data / projection
    assert json.loads(runs[0].stdout)["model"]["format"] == {"ts": "torchscript", "pt2": "export", "onnx": "onnx"}[kind]
    files = [tmp_path / "a.json", tmp_path / "b.json"]
    for out in files:
        assert invoke("analyze", path, *data, "--seed", "3", "-o", out).exit_code == 0
    assert files[0].read_bytes() == files[1].read_bytes()
