"""The command line end to end: every model format, data format, output format and exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EXAMPLES
from torch import nn

FACTORY_SOURCE = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))

def exploding():
    layers = []
    for _ in range(30):
        l = nn.Linear(1, 1, bias=False)
        nn.init.constant_(l.weight, 5.0)
        layers.append(l)
    return nn.Sequential(*layers)

def not_a_model():
    return 42
"""


@pytest.fixture
def factory(tmp_path: Path) -> Path:
    path = tmp_path / "factories.py"
    path.write_text(FACTORY_SOURCE)
    return path


@pytest.fixture
def mlp_files(tmp_path: Path, factory: Path) -> dict[str, Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        import factories  # noqa: PLC0415
        model = factories.build()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("factories", None)
    x = torch.randn(32, 8)
    files = {
        "ts": tmp_path / "model.ts",
        "pt2": tmp_path / "model.pt2",
        "state": tmp_path / "weights.pt",
        "pickle": tmp_path / "full.pt",
        "input": tmp_path / "x.pt",
    }
    torch.jit.save(torch.jit.script(model), files["ts"])
    torch.export.save(torch.export.export(model, (x,)), files["pt2"])
    torch.save(model.state_dict(), files["state"])
    torch.save(model, files["pickle"])
    torch.save(x, files["input"])
    return files


def _json(result) -> dict:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def test_version_and_help_do_not_import_torch():
    code = "import sys; from gradcheck_cli.cli.app import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "gradcheck_cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("gradcheck ")
    helped = subprocess.run([sys.executable, "-m", "gradcheck_cli", "analyze", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--input-shape" in helped.stdout


@pytest.mark.parametrize("kind,expected_format", [("ts", "torchscript"), ("pt2", "export")])
def test_graph_formats_report_module_names(invoke, mlp_files, kind, expected_format):
    report = _json(invoke("analyze", mlp_files[kind], "--input", mlp_files["input"], "--format", "json"))
    assert report["model"]["format"] == expected_format
    assert [l["name"] for l in report["layers"]] == ["0", "1", "2", "3", "4"]
    assert [l["kind"] for l in report["layers"]] == ["linear", "relu", "linear", "relu", "linear"]
    assert all(l["grad"]["output_rms"] is not None for l in report["layers"])
    assert report["layers"][0]["grad"]["weight_norm"] > 0


def test_all_formats_agree_on_the_numbers(invoke, mlp_files, factory):
    runs = {
        "ts": invoke("analyze", mlp_files["ts"], "-i", mlp_files["input"], "-F", "json"),
        "pt2": invoke("analyze", mlp_files["pt2"], "-i", mlp_files["input"], "-F", "json"),
        "state": invoke("analyze", mlp_files["state"], "--factory", f"{factory}:build", "-i", mlp_files["input"], "-F", "json"),
        "pickle": invoke("analyze", mlp_files["pickle"], "--trust-pickle", "-i", mlp_files["input"], "-F", "json"),
        "factory": invoke("analyze", f"{factory}:build", "-i", mlp_files["input"], "-F", "json"),
    }
    reports = {k: _json(v) for k, v in runs.items()}
    base = reports["factory"]
    for name, report in reports.items():
        for a, b in zip(report["layers"], base["layers"]):
            assert a["activation"]["std"] == pytest.approx(b["activation"]["std"], rel=1e-5), name
            assert a["grad"]["output_rms"] == pytest.approx(b["grad"]["output_rms"], rel=1e-5), name
        norms = {p["name"]: p["grad_norm"] for p in report["parameters"]}
        assert norms == pytest.approx({p["name"]: p["grad_norm"] for p in base["parameters"]}, rel=1e-5), name
    assert {r["model"]["format"] for r in reports.values()} == {"torchscript", "export", "state_dict", "pickle", "factory"}


def test_safetensors_with_factory(invoke, tmp_path, factory, mlp_files):
    safetensors = pytest.importorskip("safetensors.torch")
    state = torch.load(mlp_files["state"], weights_only=True)
    path = tmp_path / "w.safetensors"
    safetensors.save_file(state, str(path))
    report = _json(invoke("analyze", path, "--factory", f"{factory}:build", "-s", "4,8", "-F", "json"))
    assert report["model"]["format"] == "safetensors"


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_is_refused_without_trust_and_its_code_never_runs(invoke, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, evil)
    result = invoke("analyze", evil, "-s", "2,2")
    assert result.exit_code == 2
    assert "--trust-pickle" in result.stderr and "arbitrary code" in result.stderr
    assert "Traceback" not in result.output
    assert not marker.exists()


def test_pickled_module_needs_trust(invoke, mlp_files):
    refused = invoke("analyze", mlp_files["pickle"], "-i", mlp_files["input"])
    assert refused.exit_code == 2 and "--trust-pickle" in refused.stderr
    trusted = invoke("analyze", mlp_files["pickle"], "--trust-pickle", "-i", mlp_files["input"], "-q")
    assert trusted.exit_code == 0, trusted.output


def test_state_dict_without_factory_says_what_to_do(invoke, mlp_files):
    result = invoke("analyze", mlp_files["state"], "-i", mlp_files["input"])
    assert result.exit_code == 2
    assert "--factory" in result.stderr


def test_state_dict_that_does_not_fit_lists_the_keys(invoke, tmp_path, factory):
    path = tmp_path / "other.pt"
    torch.save(nn.Sequential(nn.Linear(8, 4)).state_dict() | {"extra.weight": torch.zeros(1)}, path)
    result = invoke("analyze", path, "--factory", f"{factory}:build", "-s", "2,8")
    assert result.exit_code == 2
    assert "missing keys" in result.stderr and "extra.weight" in result.stderr and "shape mismatch" in result.stderr


def test_factory_must_return_a_module(invoke, factory):
    result = invoke("analyze", f"{factory}:not_a_model", "-s", "2,8")
    assert result.exit_code == 2 and "not a torch.nn.Module" in result.stderr


def test_exploding_model_exits_1_by_default_and_0_when_not_gated(invoke, factory):
    failing = invoke("analyze", f"{factory}:exploding", "-s", "64,1")
    assert failing.exit_code == 1, failing.output
    assert "exploding_gradient" in failing.stdout and "exit code 1" in failing.stdout
    assert invoke("analyze", f"{factory}:exploding", "-s", "64,1", "--fail-on", "none", "-q").exit_code == 0


def test_fail_on_all_and_unknown_kinds(invoke):
    sigmoid = f"{EXAMPLES / 'models.py'}:deep_sigmoid_mlp"
    assert invoke("analyze", sigmoid, "-s", "64,64", "-q").exit_code == 1  # default gate: every error (vanishing)
    assert invoke("analyze", sigmoid, "-s", "64,64", "--fail-on", "exploding_gradient", "-q").exit_code == 0
    assert invoke("analyze", sigmoid, "-s", "64,64", "--fail-on", "none", "-q").exit_code == 0
    assert invoke("analyze", sigmoid, "-s", "64,64", "--fail-on", "vanishing_gradient", "-q").exit_code == 1
    assert invoke("analyze", sigmoid, "-s", "64,64", "--fail-on", "info", "-q").exit_code == 1
    bad = invoke("analyze", sigmoid, "-s", "64,64", "--fail-on", "vanishing,typo")
    assert bad.exit_code == 2 and "unknown finding kind" in bad.stderr


def test_json_output_file_and_keys(invoke, factory, tmp_path):
    out = tmp_path / "report.json"
    result = invoke("analyze", f"{factory}:build", "-s", "16,8", "--format", "json", "--output", out)
    assert result.exit_code == 0, result.output
    assert "report written" in result.stdout
    report = json.loads(out.read_text())
    assert report["schema_version"] == 1
    assert set(report) >= {"schema_version", "gradcheck_version", "model", "run", "layers", "findings", "summary"}
    assert set(report["model"]) >= {"source", "format", "parameters"}
    assert set(report["run"]) >= {"device", "loss", "batches", "seed"}
    layer = report["layers"][0]
    assert set(layer) >= {"name", "kind", "activation", "grad", "init"}
    assert set(layer["activation"]) >= {"mean", "std", "zero_fraction", "dead_ratio", "saturation"}
    assert set(layer["grad"]) >= {"output_rms", "weight_norm", "bias_norm"}
    assert set(layer["init"]) >= {"fan_in", "fan_out", "activation_after", "scheme", "current_std", "recommended_std"}
    assert set(report["summary"]) >= {"status", "exit_code", "first_bad_layer"}
    assert report["run"]["loss"] == "projection"
    assert not list(tmp_path.glob(".report.json.*"))  # no temp file left behind


def test_same_inputs_give_byte_identical_json(invoke, factory, tmp_path):
    a = invoke("analyze", f"{factory}:build", "-s", "16,8", "-F", "json").stdout
    b = invoke("analyze", f"{factory}:build", "-s", "16,8", "-F", "json").stdout
    assert a == b
    c = invoke("analyze", f"{factory}:build", "-s", "16,8", "-F", "json", "--seed", "1").stdout
    assert a != c


def test_unwritable_output_is_refused_before_the_analysis(invoke, factory, tmp_path):
    result = invoke("analyze", f"{factory}:build", "-s", "16,8", "-o", tmp_path / "missing" / "r.json")
    assert result.exit_code == 2 and "does not exist" in result.stderr


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt-tuple", ".pt-dict"])
def test_input_file_formats(invoke, factory, tmp_path, suffix):
    x = np.random.default_rng(0).standard_normal((10, 8)).astype(np.float32)
    if suffix == ".npy":
        path = tmp_path / "x.npy"
        np.save(path, x)
    elif suffix == ".npz":
        path = tmp_path / "x.npz"
        np.savez(path, x)
    elif suffix == ".pt-tuple":
        path = tmp_path / "x.pt"
        torch.save((torch.from_numpy(x),), path)
    else:
        path = tmp_path / "x.pt"
        torch.save({"input": torch.from_numpy(x), "target": torch.arange(10) % 3}, path)
    report = _json(invoke("analyze", f"{factory}:build", "-i", path, "-F", "json"))
    assert report["run"]["samples"] == 10
    assert report["run"]["loss"] == ("cross-entropy" if suffix == ".pt-dict" else "projection")


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_numpy_float64_inputs_are_cast_to_the_models_precision(invoke, factory, tmp_path, suffix):
    """numpy's default dtype is float64: a batch saved from np.random failed in the first layer (mat1 and mat2
    must have the same dtype). It is cast to the model's float32, with a note; the report equals the float32
    file's to float32 rounding."""
    x64 = np.random.default_rng(0).standard_normal((10, 8))
    paths = {}
    for dtype in (np.float64, np.float32):
        path = tmp_path / f"x_{np.dtype(dtype).name}{suffix}"
        (np.save if suffix == ".npy" else np.savez)(path, x64.astype(dtype))
        paths[dtype] = path
    wide = _json(invoke("analyze", f"{factory}:build", "-i", paths[np.float64], "-F", "json"))
    narrow = _json(invoke("analyze", f"{factory}:build", "-i", paths[np.float32], "-F", "json"))
    assert any("float64 arrays were cast to the model's float32" in note for note in wide["notes"])
    assert not any("float64" in note for note in narrow["notes"])
    assert [l["grad"]["output_rms"] for l in wide["layers"]] == [l["grad"]["output_rms"] for l in narrow["layers"]]


def test_targets_choose_the_loss(invoke, factory, tmp_path):
    x, y_int, y_float = tmp_path / "x.pt", tmp_path / "y.pt", tmp_path / "yf.npy"
    torch.save(torch.randn(12, 8), x)
    torch.save(torch.arange(12) % 3, y_int)
    np.save(y_float, np.zeros((12, 3), dtype=np.float32))
    assert _json(invoke("analyze", f"{factory}:build", "-i", x, "-t", y_int, "-F", "json"))["run"]["loss"] == "cross-entropy"
    assert _json(invoke("analyze", f"{factory}:build", "-i", x, "-t", y_float, "-F", "json"))["run"]["loss"] == "mse"
    bad = tmp_path / "bad.pt"
    torch.save(torch.full((12,), 7), bad)
    result = invoke("analyze", f"{factory}:build", "-i", x, "-t", bad)
    assert result.exit_code == 2 and "class targets must lie in [0, 2]" in result.stderr


def test_batches_aggregate_several_passes(invoke, factory, tmp_path):
    x = tmp_path / "x.pt"
    torch.save(torch.randn(100, 8), x)
    report = _json(invoke("analyze", f"{factory}:build", "-i", x, "--batch-size", "25", "--batches", "3", "-F", "json"))
    assert report["run"]["batches"] == 3 and report["run"]["batch_size"] == 25
    assert report["layers"][0]["activation"]["dead_ratio"] is None
    assert report["layers"][1]["activation"]["samples_per_unit"] == 75


@pytest.mark.parametrize(
    "args,message",
    [
        (["-s", "8,x"], "malformed --input-shape"),
        (["-s", "0,8"], "malformed --input-shape"),
        (["--loss", "hinge"], "Invalid value"),
        (["--batch-size", "-1", "-s", "2,8"], "Invalid value"),
        (["--device", "cuda:7", "-s", "2,8"], "cuda"),
        (["--threshold", "nope=1", "-s", "2,8"], "unknown threshold"),
        (["-i", "missing.pt"], "input file not found"),
        ([], "no input data"),
    ],
)
def test_bad_options_exit_2_with_one_line(invoke, factory, args, message):
    result = invoke("analyze", f"{factory}:build", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("content", [b"", b"\x00garbage\x01" * 10, b"PK\x03\x04truncated"])
def test_bad_model_files_exit_2(invoke, tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    result = invoke("analyze", path, "-s", "2,2")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("gradcheck: error:") and "Traceback" not in result.output


def test_forward_failure_exits_3_naming_the_layer(invoke, factory):
    result = invoke("analyze", f"{factory}:build", "-s", "4,5")  # the model wants 8 features
    assert result.exit_code == 3
    assert "forward pass raised" in result.stderr
    assert "expects 8 features" in result.stderr and "(4, 5) float32" in result.stderr


def test_model_file_is_never_modified(invoke, mlp_files):
    before = {k: p.read_bytes() for k, p in mlp_files.items()}
    for kind in ("ts", "pt2"):
        invoke("analyze", mlp_files[kind], "-i", mlp_files["input"], "-q")
    assert {k: p.read_bytes() for k, p in mlp_files.items()} == before


def test_table_output_shows_every_section(invoke):
    sigmoid = f"{EXAMPLES / 'models.py'}:deep_sigmoid_mlp"
    result = invoke("analyze", sigmoid, "-s", "128,64")
    for text in ("Layers (forward order)", "Findings", "Init variance", "vanishing_gradient", "xavier", "exit code 1"):
        assert text in result.stdout


def test_out_of_memory_says_so_and_suggests_a_smaller_batch(invoke, tmp_path):
    path = tmp_path / "oom.py"
    path.write_text(
        "import torch\n"
        "from torch import nn\n"
        "class Hungry(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(4, 4)\n"
        "    def forward(self, x):\n"
        "        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 20.00 GiB')\n"
        "def build():\n"
        "    return Hungry()\n"
    )
    result = invoke("analyze", f"{path}:build", "-s", "2,4")
    assert result.exit_code == 3
    assert "out of memory" in result.stderr and "--batch-size" in result.stderr
    assert "Traceback" not in result.output
