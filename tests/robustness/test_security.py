"""Pickle payloads never run without --trust-pickle (model files and input files alike), and a run
never modifies the files it reads."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from robust_helpers import build_model, onnx_bytes, save_onnx_external, write_factory


class _Payload:
    """Unpickling this creates ``marker``: the stand-in for arbitrary code in a malicious file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _evil_files(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """name -> (file, marker it would create)."""
    files = {}
    for name, save in {
        "zip.pt": lambda obj, p: torch.save(obj, p),
        "state.pth": lambda obj, p: torch.save(obj, p),
        "legacy.pt": lambda obj, p: torch.save(obj, p, _use_new_zipfile_serialization=False),
    }.items():
        marker = tmp_path / f"pwned-{name}"
        path = tmp_path / name
        state = build_model().state_dict()
        state["0.weight"] = _Payload(marker)  # looks like a state_dict with one poisoned entry
        save(state, path)
        files[name] = (path, marker)
    return files


@pytest.mark.parametrize("name", ["zip.pt", "state.pth", "legacy.pt"])
def test_model_file_payload_never_runs_without_trust(invoke, tmp_path, name):
    factory = write_factory(tmp_path)
    path, marker = _evil_files(tmp_path)[name]
    if name == "legacy.pt":
        assert not path.read_bytes().startswith(b"PK")  # really the pre-1.6 non-zip format
    for args in ([], ["--factory", f"{factory}:build"]):
        result = invoke("analyze", path, "-s", "2,8", *args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert "--trust-pickle" in result.stderr
        assert ("not a state_dict" if args else "arbitrary code") in result.stderr
        assert not marker.exists()
    # The payload is live: trusting the file runs it (so the assertions above can fail).
    trusted = invoke("analyze", path, "-s", "2,8", "--trust-pickle")
    assert marker.exists()
    assert trusted.exit_code == 2 and "not a torch.nn.Module" in trusted.stderr


@pytest.mark.parametrize("name", ["zip.pt", "legacy.pt"])
@pytest.mark.parametrize("flag", ["--input", "--target"])
def test_input_file_payload_is_refused(invoke, tmp_path, name, flag):
    """Data files are read with weights_only=True: no flag makes them unpickle code."""
    factory = write_factory(tmp_path)
    marker = tmp_path / "pwned-input"
    path = tmp_path / name
    payload = {"input": torch.randn(4, 8), "target": _Payload(marker)} if flag == "--input" else _Payload(marker)
    torch.save(payload, path, _use_new_zipfile_serialization=name == "zip.pt")
    args = ["-i", path] if flag == "--input" else ["-s", "4,8", "-t", path]
    for extra in ([], ["--trust-pickle"]):  # --trust-pickle is about the model file only
        result = invoke("analyze", f"{factory}:build", *args, *extra)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert result.stderr.startswith("gradcheck: error: cannot read input file")
        assert "safe loader refused it" in result.stderr and "open" in result.stderr
        assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live
    assert marker.exists()


def _digests(paths) -> dict[str, str]:
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def test_files_are_byte_identical_after_runs(invoke, tmp_path):
    factory = write_factory(tmp_path)
    model = build_model()
    x = torch.randn(16, 8)
    files = {
        "ts": tmp_path / "m.ts", "pt2": tmp_path / "m.pt2", "state": tmp_path / "w.pt", "pickle": tmp_path / "full.pt",
        "onnx": tmp_path / "m.onnx", "x": tmp_path / "x.pt", "npz": tmp_path / "x.npz", "y": tmp_path / "y.pt",
        "bad_x": tmp_path / "bad.pt",
    }
    torch.jit.save(torch.jit.script(model), files["ts"])
    torch.export.save(torch.export.export(model, (x,)), files["pt2"])
    torch.save(model.state_dict(), files["state"])
    torch.save(model, files["pickle"])
    files["onnx"].write_bytes(onnx_bytes())
    torch.save(x, files["x"])
    np.savez(files["npz"], x=x.numpy())
    torch.save(torch.arange(16) % 3, files["y"])
    torch.save(torch.randn(4, 5), files["bad_x"])
    external = save_onnx_external(tmp_path / "ext")
    watched = [*files.values(), external, external.parent / "weights.bin", factory]
    before = _digests(watched)
    runs = [
        ([files["ts"], "-i", files["x"], "-t", files["y"]], 0),
        ([files["pt2"], "-i", files["x"]], 0),
        ([files["state"], "--factory", f"{factory}:build", "-i", files["x"]], 0),
        ([files["pickle"], "--trust-pickle", "-i", files["x"], "--mode", "eval"], 0),
        ([files["onnx"], "-i", files["npz"], "--verify"], 0),
        ([external, "-i", files["x"]], 0),
        ([files["ts"], "-i", files["bad_x"]], 3),  # failing runs must not touch anything either
        ([files["onnx"], "-i", files["bad_x"]], 3),
        ([files["state"], "--factory", f"{factory}:build", "-i", files["bad_x"]], 3),
    ]
    for args, code in runs:
        result = invoke("analyze", *args, "-q")
        assert result.exit_code == code, (args, result.output)
    assert _digests(watched) == before
