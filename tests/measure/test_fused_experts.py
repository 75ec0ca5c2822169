"""Fused MoE expert weights (3-D parameters sliced per expert) get rows, in every HF experts implementation."""

from __future__ import annotations

import pytest
import torch

from gradcheck_cli import analyze

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("implementation", ["eager", "grouped_mm", "batched_mm"])
def test_mixtral_experts_are_rows_with_their_expert_fans(implementation: str) -> None:
    config = transformers.MixtralConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=48, num_attention_heads=2,
                                        num_key_value_heads=1, num_local_experts=4, num_experts_per_tok=2, vocab_size=100)
    torch.manual_seed(0)
    model = transformers.MixtralForCausalLM(config)
    model.config._experts_implementation = implementation
    report = analyze(model, {"input_ids": torch.randint(0, 100, (2, 12))})
    assert not [l.name for l in report.layers if l.kind == "unobserved"]
    experts = [l for l in report.layers if ".mlp.experts." in l.name and l.kind == "linear"]
    fans = {(l.init.fan_in, l.init.fan_out) for l in experts}
    assert fans == {(32, 96), (48, 32)}  # gate_up: hidden -> 2 x intermediate; down: intermediate -> hidden
    gradients = {p.name: p.grad_norm for p in report.parameters}
    for layer in experts:
        fused = "gate_up_proj" if layer.init.fan_out == 96 else "down_proj"
        owner = layer.name.split(".mlp.experts.")[0] + f".mlp.experts.{fused}"
        assert layer.grad.weight_norm == pytest.approx(gradients[owner])  # the fused tensor's gradient
