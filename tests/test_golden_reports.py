"""Golden JSON reports: every example model in every format it can be saved in, pinned byte for byte.

These pin behaviour through refactors: a change that moves any number, name, finding or message
shows up as a diff here. Regenerate on purpose with ``GRADCHECK_UPDATE_GOLDEN=1 pytest tests/test_golden_reports.py``
and review the diff like code.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).resolve().parent / "golden" / "reports"
UPDATE = bool(os.environ.get("GRADCHECK_UPDATE_GOLDEN"))

MODELS = {  # factory name -> input shape (small batches: these are about exactness, not statistics)
    "deep_sigmoid_mlp": (32, 64),
    "bad_relu_mlp": (32, 256),
    "he_relu_mlp": (32, 256),
    "small_resnet": (4, 3, 16, 16),
}
FORMATS = ("module", "torchscript", "export", "onnx")


def _save(model: torch.nn.Module, fmt: str, x: torch.Tensor, folder: Path):  # noqa: ANN202
    if fmt == "module":
        return model
    path = folder / {"torchscript": "model.ts", "export": "model.pt2", "onnx": "model.onnx"}[fmt]
    if fmt == "torchscript":
        torch.jit.save(torch.jit.trace(model, x), path)
    elif fmt == "export":
        torch.export.save(torch.export.export(model, (x,)), path)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), dynamo=False)
    return str(path)


def report_document(name: str, fmt: str, folder: Path) -> str:
    """The JSON the tool writes for one example model in one format, with the temp path normalised."""
    import models

    from gradcheck_cli import analyze

    x = torch.randn(*MODELS[name], generator=torch.Generator().manual_seed(0))
    model = getattr(models, name)()
    document = json.loads(analyze(_save(model, fmt, x, folder), x).to_json())
    document["model"]["source"] = f"<{fmt}>"
    _drop_environment(document["run"])
    return json.dumps(document, indent=2) + "\n"


ENVIRONMENT = ("threads", "torch_version", "python_version", "cuda_version", "device_name")
"""Run fields that describe the machine, not the model: left out of the goldens so they stay machine-independent
(checked here for presence and type instead)."""


def _drop_environment(run: dict) -> None:
    assert isinstance(run.pop("threads"), int)
    assert run.pop("torch_version") == torch.__version__
    assert isinstance(run.pop("python_version"), str)
    assert run.pop("cuda_version") == torch.version.cuda
    assert isinstance(run.pop("device_name"), (str, type(None)))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_report_matches_golden(name: str, fmt: str, tmp_path: Path) -> None:
    text = report_document(name, fmt, tmp_path)
    golden = GOLDEN / f"{name}.{fmt}.json"
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden.name}: run with GRADCHECK_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{golden.name} changed: review, then regenerate with GRADCHECK_UPDATE_GOLDEN=1"
