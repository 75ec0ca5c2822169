"""Models handed to the Python API as objects: what each kind is analysed as."""

from __future__ import annotations

import torch
from torch import nn

from gradcheck_cli import analyze


def test_a_compiled_module_is_analysed_as_its_eager_module() -> None:
    """``torch.compile(model)`` wraps the model in an OptimizedModule: analysed as is, it compiled (17 s
    for a 3-layer MLP on CPU) and every row and parameter carried an ``_orig_mod.`` prefix. Its eager
    module gives the same numbers under the model's own names, without compiling."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    plain, compiled = analyze(model, x), analyze(torch.compile(model), x)
    assert [l.name for l in compiled.layers] == [l.name for l in plain.layers] == ["0", "1", "2"]
    assert [l.grad.output_rms for l in compiled.layers] == [l.grad.output_rms for l in plain.layers]
    assert [p.name for p in compiled.parameters] == [p.name for p in plain.parameters]
    assert any("torch.compile'd module" in note for note in compiled.notes)
    assert compiled.model.source == "<Sequential>"
