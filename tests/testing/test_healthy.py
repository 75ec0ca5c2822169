"""Default thresholds give zero findings on healthy models at init (the false-alarm guard)."""

from __future__ import annotations

import pytest
import torch
from conftest import mlp
from models import SmallResNet
from torch import nn

from gradcheck_cli import analyze


class BNCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in (16, 32, 32, 64, 64):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 500, d: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=4, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)))


def _healthy_cases():
    torch.manual_seed(0)
    return {
        "he_relu_mlp_20": (lambda: mlp(20, 256, nn.ReLU, "he"), torch.randn(256, 256)),
        "bn_cnn": (BNCNN, torch.randn(16, 3, 32, 32)),
        "resnet": (lambda: SmallResNet(16, 6), torch.randn(16, 3, 32, 32)),
        "transformer": (TinyTransformer, torch.randint(0, 500, (8, 32))),
    }


@pytest.mark.parametrize("name", list(_healthy_cases()))
def test_healthy_model_has_no_findings(name):
    build, data = _healthy_cases()[name]
    torch.manual_seed(0)
    report = analyze(build(), data)
    assert report.findings == [], [(f.kind, f.layer, f.value) for f in report.findings]
    assert report.summary.status == "ok" and report.summary.exit_code == 0
    assert sum(l.observed for l in report.layers) >= 10


def test_gpt2_at_init_has_no_findings():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=500, n_positions=64,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    report = analyze(model, torch.randint(0, 500, (2, 32)))
    assert report.findings == [], [(f.kind, f.layer, f.value) for f in report.findings]
    kinds = {l.name: l.kind for l in report.layers}
    assert kinds["transformer.h.0.attn.c_attn"] == "linear"  # HF's Conv1D is a transposed Linear
    c_fc = next(l for l in report.layers if l.name == "transformer.h.0.mlp.c_fc")
    assert (c_fc.init.fan_in, c_fc.init.fan_out, c_fc.init.activation_after) == (64, 256, "gelu")
    tied = next(p for p in report.parameters if p.name == "transformer.wte.weight")
    assert tied.aliases == ["lm_head.weight"]


def test_transformer_functional_activations_are_observed():
    torch.manual_seed(0)
    report = analyze(TinyTransformer(), torch.randint(0, 500, (4, 16)))
    names = [l.name for l in report.layers]
    assert "encoder.layers.0.relu" in names  # F.relu inside TransformerEncoderLayer
    relu = next(l for l in report.layers if l.name == "encoder.layers.0.relu")
    assert relu.activation.dead_ratio is not None
    linear1 = next(l for l in report.layers if l.name == "encoder.layers.0.linear1")
    assert linear1.init.activation_after == "relu"
