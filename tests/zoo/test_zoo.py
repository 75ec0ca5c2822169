"""Real model families at their library's own init: no error or warning that the numbers do not support.

transformers' own classes, built from tiny configs with random weights (nothing is downloaded; the
table lives in ``benchmarks/verdicts/zoo.py``, where adding a family is one line). At their standard
init these models train, so any error or warning here is a false alarm. A few families also go
through torch.export (.pt2) and ONNX, and must get the same (empty) set of alarms there.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from zoo_table import FAMILIES, FirstOutput, built

from gradcheck_cli import analyze

EXPORTED = ("gpt2", "bert", "llama", "vit")
"""Families also checked as .pt2 and ONNX (export takes seconds each, so a representative few)."""

pytest.importorskip("transformers")


def _alarms(report) -> set[tuple[str, str]]:  # noqa: ANN001
    return {(f.kind, f.layer) for f in report.findings if f.severity in ("error", "warning")}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_healthy_family_has_no_alarm(name: str) -> None:
    model, inputs = built(name)
    report = analyze(model, inputs)
    assert not _alarms(report), [f.message for f in report.findings if f.severity != "info"]
    assert any(l.topology is not None and l.topology.path == "branch" for l in report.layers)  # the graph was read


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["export", "onnx"])
@pytest.mark.parametrize("name", EXPORTED)
def test_exported_family_has_the_same_alarms(name: str, fmt: str, tmp_path: Path) -> None:
    model, inputs = built(name)
    model = FirstOutput(model, list(inputs))  # a plain tensor out: no pytree output class to register on load
    args = tuple(inputs.values())
    eager = analyze(model, args)
    path = tmp_path / ("model.pt2" if fmt == "export" else "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "export":
            torch.export.save(torch.export.export(model, args), path)
        else:
            torch.onnx.export(model, args, str(path), input_names=list(inputs), dynamo=True, verbose=False)
    exported = analyze(str(path), args)
    assert _alarms(exported) == _alarms(eager) == set(), [f.message for f in exported.findings if f.severity != "info"]


@pytest.mark.parametrize("reentrant", [True, False])
@pytest.mark.parametrize("name", ["gpt2", "llama", "gemma2", "mixtral", "mamba"])
def test_gradient_checkpointing_changes_no_row(name: str, reentrant: bool) -> None:
    """``gradient_checkpointing_enable()`` re-runs every block inside the backward. On the tiny GPT-2 the
    reentrant form gave 60 rows instead of 32 (28 duplicates named ``#2``) and 28 rows without a
    gradient; functional activations (Gemma2, Mixtral's experts, Mamba's mixer) lost theirs too, and
    an op called twice in a block needs the call-by-call replay. Now the rows, the verdicts and the
    gradients are the plain model's. (Not wav2vec2: its layerdrop and masking draw differently under
    checkpointing, so even its bare gradients differ by 35%.)"""
    def layers(checkpointing: bool):  # noqa: ANN202
        model, inputs = built(name)
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = analyze(model, inputs)
        return [(l.name, l.grad.output_rms) for l in report.layers], sorted(f.kind for f in report.findings)

    (plain, plain_kinds), (checkpointed, kinds) = layers(False), layers(True)
    assert [n for n, _ in checkpointed] == [n for n, _ in plain] and kinds == plain_kinds
    for (layer, grad), (_, grad_c) in zip(plain, checkpointed):
        assert (grad is None) == (grad_c is None), layer
        if grad is not None:
            assert grad_c == pytest.approx(grad, rel=1e-5), layer
