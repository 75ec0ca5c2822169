"""Every report the tool writes validates against the schema `gradcheck schema` prints."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.schema import report_schema


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
