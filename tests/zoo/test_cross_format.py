"""One model, four formats, one report: layer names, parameter roles and gradients agree.

A transformers model at random init is analysed eagerly and as a TorchScript trace and a torch.export
program of the same module: the weight/norm/embedding rows must carry the eager names (TorchScript's
module hierarchy skips ModuleLists; normalisation modules that the export decomposes get their row
back), the same fans (roles from how a parameter is used: GPT-2's Conv1D is ``addmm(bias, x, W)``),
and the same gradients.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from zoo_table import FirstOutput, built

from gradcheck_cli import analyze

pytest.importorskip("transformers")
LAYERS = ("linear", "conv", "embedding", "layernorm", "rmsnorm", "batchnorm", "groupnorm")


def _rows(report):  # noqa: ANN001, ANN202
    return {l.name: l for l in report.layers if l.kind in LAYERS and l.observed}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "t5"])
def test_formats_agree_with_eager(name: str, tmp_path: Path) -> None:
    model, inputs = built(name)
    model = FirstOutput(model, list(inputs))
    args = tuple(inputs.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(model, args), tmp_path / "m.ts")
        torch.export.save(torch.export.export(model, args), tmp_path / "m.pt2")
    eager = _rows(analyze(model, args))
    for fmt in ("m.ts", "m.pt2"):
        other = _rows(analyze(str(tmp_path / fmt), args))
        assert set(other) == set(eager), (fmt, sorted(set(eager) ^ set(other))[:6])
        for layer, row in eager.items():
            there = other[layer]
            if row.init is not None:
                assert (there.init.fan_in, there.init.fan_out) == (row.init.fan_in, row.init.fan_out), (fmt, layer)
            if row.grad.weight_norm:
                assert there.grad.weight_norm == pytest.approx(row.grad.weight_norm, rel=1e-4), (fmt, layer)
            if row.grad.output_rms:
                assert there.grad.output_rms == pytest.approx(row.grad.output_rms, rel=1e-4), (fmt, layer)


@pytest.mark.slow
def test_onnx_norms_get_their_own_gradients_where_the_exporter_merged_them(tmp_path: Path) -> None:
    """The exporter stores GPT-2's nine all-ones LayerNorm scales as one initializer; each row must still
    show its own layer's gradient (eval mode: the exported graph has no dropout)."""
    model, inputs = built("gpt2")
    model = FirstOutput(model, list(inputs)).eval()
    args = tuple(inputs.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(tmp_path / "m.onnx"), input_names=list(inputs), dynamo=True, verbose=False)
    eager = analyze(model, args, mode="eval")
    onnx_report = analyze(str(tmp_path / "m.onnx"), args, mode="eval")
    norms = {l.name: l.grad.weight_norm for l in onnx_report.layers if l.kind == "layernorm"}
    expected = {l.name: l.grad.weight_norm for l in eager.layers if l.kind == "layernorm"}
    assert set(norms) == set(expected) and len(expected) == 9
    assert len({round(v, 6) for v in norms.values()}) == 9  # not one summed value on every row
    for name, value in expected.items():
        assert norms[name] == pytest.approx(value, rel=1e-4), name
    assert any("shared by several layers" in note for note in onnx_report.notes)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gpt2", "bert", "llama"])
def test_onnx_rows_match_eager(name: str, tmp_path: Path) -> None:
    """torch.onnx.export(dynamo=True) in eval mode: the same weight/norm/embedding rows under the eager names,
    the tied LM head and the folded position embedding included, with eager's weight gradients. (T5 does not
    export with torch 2.13; BERT's pooler is not part of the exported first output, so it has no row.)"""
    model, inputs = built(name)
    model = FirstOutput(model, list(inputs)).eval()
    args = tuple(inputs.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(tmp_path / "m.onnx"), input_names=list(inputs), dynamo=True, verbose=False)
    eager = {layer: row for layer, row in _rows(analyze(model, args, mode="eval")).items() if row.grad.output_rms}
    report = analyze(str(tmp_path / "m.onnx"), args, mode="eval")
    other = _rows(report)
    assert set(other) == set(eager), sorted(set(eager) ^ set(other))[:6]
    for layer, row in eager.items():
        if row.grad.weight_norm:
            assert other[layer].grad.weight_norm == pytest.approx(row.grad.weight_norm, rel=1e-4), layer
        if row.init is not None:
            assert (other[layer].init.fan_in, other[layer].init.fan_out) == (row.init.fan_in, row.init.fan_out), layer
    if name == "gpt2":
        assert {"model.lm_head", "model.transformer.wpe", "model.transformer.wte"} <= set(other)
        assert not any(p.name.startswith("val_") for p in report.parameters)  # the causal mask is no parameter
