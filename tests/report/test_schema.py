"""Every report the tool writes validates against the schema `gradcheck schema` prints."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import jsonschema
import pytest
import torch
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.report.schema import comparison_schema, report_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def validator():
    schema = report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


class _NaN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.free = nn.Parameter(torch.ones(3))  # used outside a layer: a "not observed" row

    def forward(self, x):
        return self.fc(x) * self.free * float("nan")


def _reports():
    from models import deep_sigmoid_mlp, small_resnet

    yield analyze(deep_sigmoid_mlp(depth=4), torch.randn(32, 64))  # findings, init advice
    yield analyze(small_resnet(), torch.randn(4, 3, 16, 16), batch_size=2, batches=2)
    yield analyze(_NaN(), torch.randn(4, 3))  # null + *_nonfinite fields, unobserved rows


def test_every_report_validates(validator):
    for report in _reports():
        document = json.loads(report.to_json())
        errors = sorted(validator.iter_errors(document), key=str)
        assert not errors, [e.message for e in errors[:5]]


def test_the_schema_rejects_what_the_tool_never_writes(validator):
    document = json.loads(next(_reports()).to_json())
    document["layers"][0]["activation"]["std"] = "big"
    document["summary"]["surprise"] = 1
    messages = [e.message for e in validator.iter_errors(document)]
    assert any("'big'" in m for m in messages) and any("surprise" in m for m in messages)


def test_cli_prints_the_schema(invoke):
    result = invoke("schema")
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert printed == report_schema()
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


SHAPES = {"small_resnet": "4,3,16,16", "bad_relu_mlp": "32,256", "he_relu_mlp": "32,256"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy ONNX exporter says it is legacy
def test_every_example_model_report_validates(validator, invoke, tmp_path):
    """Each factory in examples/models.py, run through the CLI (so the JSON is what users get, here
    with ignored findings too), the committed CI baseline, and an ONNX model's report."""
    import models

    factories = [name for name, fn in inspect.getmembers(models, inspect.isfunction)
                 if not name.startswith("_") and fn.__module__ == "models"]
    assert {"deep_sigmoid_mlp", "bad_relu_mlp", "he_relu_mlp", "small_resnet"} <= set(factories)
    documents = [json.loads((ROOT / "examples" / "ci" / "gradcheck-baseline.json").read_text())]
    for name in factories:
        out = tmp_path / f"{name}.json"
        result = invoke("analyze", f"{ROOT / 'examples' / 'models.py'}:{name}", "-s", SHAPES.get(name, "32,64"),
                        "-o", out, "--ignore", "*:init_mismatch")
        assert result.exit_code in (0, 1), result.output
        documents.append(json.loads(out.read_text()))
    assert any(d["ignored_findings"] for d in documents)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.randn(4, 8),), str(path), dynamo=False)
    documents.append(json.loads(analyze(str(path)).to_json()))
    for document in documents:
        errors = sorted(validator.iter_errors(document), key=str)
        assert not errors, (document["model"]["source"], [e.message for e in errors[:5]])


def test_comparisons_validate(invoke, tmp_path):
    schema = comparison_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    check = jsonschema.Draft202012Validator(schema)
    from models import bad_relu_mlp, he_relu_mlp

    x = torch.randn(64, 256)
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(analyze(he_relu_mlp(depth=8), x).to_json())
    bad.write_text(analyze(bad_relu_mlp(depth=8), x).to_json())
    for old, new in ((good, bad), (bad, good), (good, good)):
        result = invoke("compare", old, new, "-F", "json")
        document = json.loads(result.stdout)
        assert not list(check.iter_errors(document)), document["verdict"]
    assert json.loads(invoke("schema", "comparison").stdout) == schema


def test_reports_from_before_an_addition_still_validate_and_load(validator):
    """Keys added within a schema version have defaults: a report written before them is still valid."""
    from gradcheck_cli.report.model import Report

    document = json.loads(next(_reports()).to_json())
    for key in ("ignore", "config", "sample_stats"):
        del document["run"][key]
    del document["ignored_findings"]
    assert not list(validator.iter_errors(document))
    report = Report.from_dict(document)
    assert report.run.ignore == [] and report.run.sample_stats is None and report.ignored_findings == []
    del document["summary"]  # an original key stays required
    assert any("'summary' is a required property" in e.message for e in validator.iter_errors(document))
