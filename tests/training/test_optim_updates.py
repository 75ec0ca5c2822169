"""The update norms recomputed from the optimiser's state equal the step actually taken (a weight copy)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradcheck_cli.training.optim import UpdateMeter

CASES = [
    (torch.optim.SGD, {"lr": 0.1}),
    (torch.optim.SGD, {"lr": 0.1, "weight_decay": 0.05}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.05}),
    (torch.optim.SGD, {"lr": 0.1, "weight_decay": 0.05, "maximize": True}),
    (torch.optim.Adam, {"lr": 1e-2}),
    (torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.1}),
    (torch.optim.Adam, {"lr": 1e-2, "amsgrad": True}),
    (torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1}),
    (torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1, "maximize": True, "amsgrad": True}),
    (torch.optim.RMSprop, {"lr": 1e-2}),  # not recomputed: the copy taken by the step pre-hook
]


@pytest.mark.parametrize(("cls", "kwargs"), CASES, ids=lambda c: getattr(c, "__name__", None) or str(c))
def test_update_norms_equal_the_step_taken(cls: type, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    optimizer = cls(model.parameters(), **kwargs)
    meter = UpdateMeter(optimizer)
    params = list(model.parameters())
    x, y = torch.randn(16, 6), torch.randn(16, 3)
    try:
        for step in range(4):  # later steps exercise momentum buffers and bias correction
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            before = [p.detach().clone() for p in params]
            meter.armed = True
            optimizer.step()
            got = [float(t) for t in meter.squares(params)]
            expected = [float((p.detach() - b).double().square().sum()) for p, b in zip(params, before)]
            assert got == pytest.approx(expected, rel=1e-4, abs=1e-14), step
    finally:
        meter.close()
    assert meter.exact is (cls is not torch.optim.RMSprop)


def test_a_parameter_the_optimiser_does_not_hold_has_no_update() -> None:
    model = nn.Linear(3, 3)
    optimizer = torch.optim.SGD([model.weight], lr=0.1)
    model(torch.randn(2, 3)).sum().backward()
    optimizer.step()
    weight, bias = UpdateMeter(optimizer).squares([model.weight, model.bias])
    assert weight is not None and float(weight) > 0 and bias is None


@pytest.mark.parametrize(("cls", "kwargs"), [
    (torch.optim.Adam, {"lr": 1e-3}),
    (torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.1}),
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
])
def test_large_tensors_are_recomputed_on_a_sample_within_two_percent(cls: type, kwargs: dict) -> None:
    from gradcheck_cli.training.optim import SAMPLED

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 8))
    assert model[0].weight.numel() > SAMPLED  # the sampled path
    optimizer = cls(model.parameters(), **kwargs)
    meter = UpdateMeter(optimizer)
    x, y = torch.randn(64, 512), torch.randn(64, 8)
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        before = model[0].weight.detach().clone()
        optimizer.step()
        got = float(meter.squares([model[0].weight])[0])
        assert got == pytest.approx(float((model[0].weight.detach() - before).double().square().sum()), rel=0.02)


@pytest.mark.parametrize(("cls", "kwargs"), [
    (torch.optim.SGD, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (torch.optim.AdamW, {"weight_decay": 0.1}),
])
def test_a_zero_learning_rate_moves_nothing(cls: type, kwargs: dict) -> None:
    """A warm-up from lr 0: the recomputation divides by the learning rate nowhere."""
    torch.manual_seed(0)
    model = nn.Linear(300, 300)  # above SAMPLED: the sampled path too
    optimizer = cls(model.parameters(), lr=0.0, **kwargs)
    model(torch.randn(8, 300)).square().mean().backward()
    optimizer.step()
    assert UpdateMeter(optimizer).squares([model.weight, model.bias]) == [0.0, 0.0]


@pytest.mark.parametrize(("cls", "kwargs"), [(torch.optim.Adam, {"lr": 1e-2}), (torch.optim.AdamW, {"lr": 1e-2, "weight_decay": 0.1})],
                         ids=["adam", "adamw"])
def test_exact_zeros_in_the_second_moment_keep_the_update_exact(cls: type, kwargs: dict) -> None:
    """Inputs with dead features give whole columns of exactly zero gradient, so second moments of
    exact zeros (raised to the smallest normal before the square root): the recomputed step still
    equals the one taken, on the whole tensor and on the sampled one."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 300), nn.Tanh(), nn.Linear(300, 2))
    optimizer = cls(model.parameters(), **kwargs)
    meter = UpdateMeter(optimizer)
    x = torch.randn(32, 300)
    x[:, ::3] = 0.0  # a third of the first layer's weight columns get no gradient
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), torch.randn(32, 2)).backward()
        before = [p.detach().clone() for p in model.parameters()]
        meter.armed = True
        optimizer.step()
    assert float((optimizer.state[model[0].weight]["exp_avg_sq"] == 0).float().mean()) > 0.3
    got = meter.squares(list(model.parameters()))
    expected = [float((p.detach() - b).double().square().sum()) for p, b in zip(model.parameters(), before)]
    assert got[1:] == pytest.approx(expected[1:], rel=1e-4)  # the bias and the second layer: whole tensors
    assert got[0] == pytest.approx(expected[0], rel=0.05)    # the first weight: sampled (90000 elements)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_adam_updates_equal_the_step_taken(dtype: torch.dtype) -> None:
    """Half-precision parameters keep half-precision moments, most of them exact zeros or below float16's
    normal range here: the recomputed step (sampled: 90000 elements) still matches a weight copy."""
    torch.manual_seed(0)
    model = nn.Linear(300, 300).to(dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, eps=1e-4)
    meter = UpdateMeter(optimizer)
    x = torch.randn(32, 300, dtype=dtype)
    for _ in range(3):
        optimizer.zero_grad()
        model(x).float().pow(2).mean().backward()
        before = [p.detach().clone() for p in model.parameters()]
        meter.armed = True
        optimizer.step()
    got = meter.squares(list(model.parameters()))
    expected = [float((p.detach().double() - b.double()).square().sum()) for p, b in zip(model.parameters(), before)]
    assert got == pytest.approx(expected, rel=0.03)
