"""The JSON contract: always valid JSON, non-finite floats as null + flag, stable, equal to to_dict()."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from gradcheck_cli import analyze

from gradcheck_cli.report.codec import encode
from gradcheck_cli.report.model import Finding


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_encodes_to_valid_json(value):
    finding = Finding("nonfinite", "error", "x", value, 0.0, "m", "h")
    encoded = json.loads(json.dumps(encode(finding), allow_nan=False))
    if math.isfinite(value):
        assert encoded["value"] == float(f"{value:.7g}")
        assert "value_nonfinite" not in encoded
    else:
        assert encoded["value"] is None
        assert encoded["value_nonfinite"] == ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))


def test_nan_model_gives_valid_json_equal_to_to_dict():
    class NaN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) * float("nan")

    report = analyze(NaN(), torch.randn(4, 3))
    text = report.to_json()
    parsed = json.loads(text, parse_constant=lambda token: pytest.fail(f"invalid JSON token {token}"))
    assert parsed == report.to_dict()
    assert parsed["summary"]["first_nonfinite_layer"] == "fc"
    # fc's own output is finite; the NaN enters after it, so fc is where the backward pass turns NaN.
    assert parsed["layers"][0]["activation"]["nonfinite_units"] == 0
    assert parsed["layers"][0]["grad"]["nonfinite"] is True
    assert parsed["layers"][0]["grad"]["output_rms"] is None
    assert parsed["layers"][0]["grad"]["output_rms_nonfinite"] == "nan"
    assert [f["kind"] for f in parsed["findings"]] == ["nonfinite"]
