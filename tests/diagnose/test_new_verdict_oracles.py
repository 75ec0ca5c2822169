"""Symmetry, recurrence through time, the output layer, steady per-layer gain and the edge of chaos,
each against its theory (THEORY.md sections 4 and 6) on models built here."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradcheck_cli import analyze


def _kinds(report, severity=("error", "warning")):  # noqa: ANN001, ANN202
    return {f.kind for f in report.findings if f.severity in severity}


def _mlp(depth: int, width: int, init, act=nn.ReLU, head: int = 4) -> nn.Sequential:  # noqa: ANN001
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layer = nn.Linear(width, width)
        init(layer)
        layers += [layer, act()]
    return nn.Sequential(*layers, nn.Linear(width, head))


def _x(n: int = 256, width: int = 32) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(1))


# -- symmetry ---------------------------------------------------------------------------------------

def _constant(layer: nn.Linear) -> None:
    nn.init.constant_(layer.weight, 1.0 / layer.in_features)
    nn.init.zeros_(layer.bias)


def _copied_rows(layer: nn.Linear) -> None:
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    layer.weight.data[:] = layer.weight.data[:1].clone()


def test_constant_and_copied_rows_are_symmetric_units() -> None:
    for init in (_constant, _copied_rows):
        report = analyze(_mlp(5, 32, init), _x())
        flagged = [f for f in report.findings if f.kind == "symmetric_units"]
        assert [f.layer for f in flagged] == ["0", "2", "4", "6"] and all(f.severity == "error" for f in flagged)
        assert all(l.init.unit_spread == 0.0 for l in report.layers if l.init and l.name != "10")  # not the head
        assert report.summary.exit_code == 1


def test_symmetric_units_really_stay_identical_under_training() -> None:
    """The theory the verdict rests on: units with identical weights (and identical outgoing columns)
    get the same update each step, so after 50 SGD steps every row of layer 0 is still the same."""
    model = _mlp(3, 16, _constant)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _x(64, 16), torch.randint(0, 4, (64,), generator=torch.Generator().manual_seed(2))
    for _ in range(50):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    w = model[0].weight.detach()
    assert (w - w[:1]).abs().max() < 1e-6 < w.abs().max()


def test_random_init_and_a_lone_zero_layer_are_not_symmetric() -> None:
    def he(layer: nn.Linear) -> None:
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")

    model = _mlp(5, 32, he)
    nn.init.zeros_(model[4].weight)  # one zero layer: the random layer after it breaks the symmetry
    report = analyze(model, _x())
    assert "symmetric_units" not in _kinds(report)
    assert next(l for l in report.layers if l.name == "0").init.unit_spread > 0.9


# -- through time -----------------------------------------------------------------------------------

class LastStep(nn.Module):
    def __init__(self, cell: str = "LSTM", forget_bias: float | None = None, radius: float | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = getattr(nn, cell)(8, 32, batch_first=True)
        self.head = nn.Linear(32, 4)
        if forget_bias is not None:  # gate order i, f, g, o; bias_ih + bias_hh together
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias"):
                    p.data.zero_()
                    p.data[32:64] = forget_bias / 2
        if radius is not None:
            nn.init.orthogonal_(self.rnn.weight_hh_l0)
            self.rnn.weight_hh_l0.data *= radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def _seq(steps: int) -> torch.Tensor:
    return torch.randn(64, steps, 8, generator=torch.Generator().manual_seed(3))


def test_an_lstm_over_60_steps_vanishes_through_time_and_decays_per_step() -> None:
    report = analyze(LastStep(), _seq(60))
    (rnn,) = [l for l in report.layers if l.time is not None]
    profile = rnn.time.grad_rms
    assert rnn.time.steps == 60 and rnn.time.ratio < 1e-9  # default init: forget gate ~0.5
    halves = [profile[i] / profile[i + 10] for i in range(0, 50, 10)]
    assert all(h < 0.2 for h in halves)  # a steady decay, every 10 steps, not one cliff
    (f,) = [f for f in report.findings if f.kind == "vanishing_gradient"]
    assert f.layer == "rnn" and "through time" in f.message and "forget-gate bias" in f.hint


def test_forget_bias_one_keeps_20_steps_and_default_does_not() -> None:
    assert "vanishing_gradient" in _kinds(analyze(LastStep(), _seq(20)))
    healthy = analyze(LastStep(forget_bias=1.0), _seq(20))
    assert "vanishing_gradient" not in _kinds(healthy)
    (rnn,) = [l for l in healthy.layers if l.time is not None]
    assert rnn.time.ratio > 1e-3


def test_the_probe_leaves_the_model_and_its_gradients_alone() -> None:
    model = LastStep()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = analyze(model, _seq(10)).to_json()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert analyze(model, _seq(10)).to_json() == first  # the probe's randomness is its own


def test_a_cell_called_per_step_is_judged_through_time_from_its_rows() -> None:
    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.cell = nn.RNNCell(8, 32)
            nn.init.orthogonal_(self.cell.weight_hh)
            self.cell.weight_hh.data *= 0.5  # radius 0.5: 0.5^T through time
            self.head = nn.Linear(32, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.zeros(x.shape[0], 32)
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return self.head(h)

    report = analyze(Loop(), _seq(16))
    rows = [l for l in report.layers if l.name.split("#")[0] == "cell"]
    assert len(rows) == 16
    (f,) = [f for f in report.findings if f.kind == "vanishing_gradient"]
    assert f.layer == "cell" and "through time" in f.message and f.value < 1e-3


# -- output layer, steady gain, edge of chaos -------------------------------------------------------

def test_an_output_layer_5x_too_large_is_flagged_and_a_small_one_is_not() -> None:
    def xavier(layer: nn.Linear) -> None:
        nn.init.xavier_normal_(layer.weight, gain=5 / 3)
        nn.init.zeros_(layer.bias)

    model = _mlp(3, 32, xavier, act=nn.Tanh, head=10)
    nn.init.xavier_normal_(model[-1].weight, gain=5.0)
    (f,) = [f for f in analyze(model, _x()).findings if f.kind == "init_mismatch"]
    assert f.layer == "6" and "output layer" in f.message and f.value == pytest.approx(5.0, rel=0.1)
    nn.init.zeros_(model[-1].weight)
    assert "init_mismatch" not in _kinds(analyze(model, _x()))


def _bn_mlp(depth: int) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(128, 128), nn.BatchNorm1d(128), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(128, 10))


def test_a_deep_batchnorm_mlp_shows_its_per_layer_gain() -> None:
    """Yang et al. 2019: BatchNorm without shortcuts has a per-layer backward gain > 1 at init."""
    report = analyze(_bn_mlp(30), torch.randn(256, 128, generator=torch.Generator().manual_seed(1)))
    grads = [l.grad.output_rms for l in report.layers if l.kind == "linear"][:-1]
    per_layer = (grads[0] / grads[-1]) ** (1 / (len(grads) - 1))
    assert 10 < grads[0] / grads[-1] < 1e3 and per_layer > 1.1  # under the end-to-end threshold
    (f,) = [f for f in report.findings if f.kind == "exploding_gradient"]
    assert "per layer" in f.message and "steadily" in f.message and f.value == pytest.approx(per_layer, rel=0.05)
    shallow = analyze(_bn_mlp(10), torch.randn(256, 128, generator=torch.Generator().manual_seed(1)))
    assert "exploding_gradient" not in _kinds(shallow)


def test_deep_tanh_advice_is_gain_one_and_five_thirds_is_chaotic() -> None:
    def gain(g: float):  # noqa: ANN202
        def init(layer: nn.Linear) -> None:
            nn.init.xavier_normal_(layer.weight, gain=g)
            nn.init.zeros_(layer.bias)
        return init

    chaotic = analyze(_mlp(30, 64, gain(5 / 3), act=nn.Tanh), _x(256, 64))
    advice = next(l.init for l in chaotic.layers if l.init)
    assert advice.gain == 1.0 and "edge of chaos" in advice.note and advice.call.endswith("gain=1.0)")
    flagged = [f for f in chaotic.findings if f.kind == "init_mismatch"]
    assert len(flagged) >= 29 and all(math.isclose(f.value, 5 / 3, rel_tol=0.05) for f in flagged)
    critical = analyze(_mlp(30, 64, gain(1.0), act=nn.Tanh), _x(256, 64))
    assert "init_mismatch" not in _kinds(critical)
    shallow = analyze(_mlp(5, 64, gain(5 / 3), act=nn.Tanh), _x(256, 64))
    assert next(l.init for l in shallow.layers if l.init).gain == pytest.approx(5 / 3)  # textbook advice


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_onnx_recurrent_ops_get_the_same_profile_as_eager(cell: str, tmp_path) -> None:  # noqa: ANN001
    import warnings

    model, x = LastStep(cell).eval(), _seq(30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(tmp_path / "m.onnx"), dynamo=False)
    eager = next(l.time for l in analyze(model, x, mode="eval").layers if l.time)
    onnx_report = analyze(str(tmp_path / "m.onnx"), x, mode="eval")
    exported = next(l.time for l in onnx_report.layers if l.time)
    assert exported.steps == eager.steps == 30
    assert exported.grad_rms == pytest.approx(eager.grad_rms, rel=1e-4)
    assert any(f.kind == "vanishing_gradient" and "through time" in f.message for f in onnx_report.findings)
