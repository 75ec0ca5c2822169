"""A logged step's per-layer point against the step recomputed by hand from copies of the weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradcheck_cli.loading import wrap_object
from gradcheck_cli.training.optim import SAMPLED, UpdateMeter
from gradcheck_cli.training.recorder import StepRecorder


@pytest.mark.parametrize(("cls", "kwargs"), [
    (torch.optim.AdamW, {"lr": 1e-3, "weight_decay": 0.1}),
    (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}),
])
def test_logged_points_equal_the_step_taken(cls: type, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 512), nn.Tanh(), nn.Linear(512, 4))
    assert model[2].weight.numel() > SAMPLED > model[0].weight.numel()  # one sampled, one whole
    x, y = torch.randn(64, 16), torch.randn(64, 4)
    optimizer = cls(model.parameters(), **kwargs)
    meter, recorder = UpdateMeter(optimizer), StepRecorder(wrap_object(model))
    for step in range(3):  # later steps: momentum buffers, bias correction
        forward = recorder.arm()
        meter.armed = True
        optimizer.zero_grad()
        nn.functional.mse_loss(forward(x), y).backward()
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        grads = {name: p.grad.detach().clone() for name, p in model.named_parameters()}
        optimizer.step()
        point = recorder.record(step, meter)
        meter.armed = False
        after = dict(model.named_parameters())
        total = math.sqrt(sum(float(g.double().square().sum()) for g in grads.values()))
        assert point.grad_norm == pytest.approx(total, rel=1e-5)
        for layer in ("0", "2", "4"):
            w, g = after[f"{layer}.weight"].detach().double(), grads[f"{layer}.weight"].double()
            delta = w - before[f"{layer}.weight"].double()
            assert point.layers[layer].weight_ratio == pytest.approx(float(g.norm() / w.norm()), rel=1e-5)
            sampled = after[f"{layer}.weight"].numel() > SAMPLED
            assert point.layers[layer].update_ratio == pytest.approx(float(delta.norm() / w.norm()),
                                                                     rel=0.02 if sampled else 1e-4), (step, layer)
        assert point.layers["1"].dead is not None and point.layers["3"].saturation is not None
    meter.close()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _point(clip: float | None, hot: bool, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN202
    from gradcheck_cli.measure.hot import HotSquares
    from gradcheck_cli.training import recorder as recorder_module

    if not hot:  # a HotSquares that takes nothing: every gradient read after the step
        monkeypatch.setattr(recorder_module, "HotSquares", lambda params, weights: HotSquares({}, weights=weights))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 512), nn.Tanh(), nn.Linear(512, 4))
    x, y = torch.randn(64, 16), torch.randn(64, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    meter, recorder = UpdateMeter(optimizer), StepRecorder(wrap_object(model))
    forward = recorder.arm()
    meter.armed = True
    nn.functional.mse_loss(forward(x), y).backward()
    if clip is not None:  # scales the gradients in place after the backward took their squares
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    taken = recorder._hot.grads if recorder._hot is not None else {}
    used = [p for p in model.parameters() if recorder._hot is not None and recorder._hot.grad_squares(p) is not None]
    point = recorder.record(0, meter)
    monkeypatch.undo()
    return point, len(taken), len(used)


@pytest.mark.parametrize("clip", [None, 0.5])
def test_gradient_squares_from_the_backward_equal_the_cold_reading(clip: float | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The large gradients' squares are taken right after autograd wrote them and give the same bits as a
    read after the step; a gradient clipped in place since (its version moved) is read again, so the
    record holds the clipped gradients either way (without that check its ratio is the unclipped one)."""
    hot, taken, used = _point(clip, True, monkeypatch)
    cold, _, _ = _point(clip, False, monkeypatch)
    assert taken == 1 and used == (1 if clip is None else 0)  # the 256x512 weight's gradient
    assert hot.grad_norm == cold.grad_norm
    assert {n: (l.weight_ratio, l.update_ratio) for n, l in hot.layers.items()} == \
        {n: (l.weight_ratio, l.update_ratio) for n, l in cold.layers.items()}
