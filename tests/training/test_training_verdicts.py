"""Verdicts over training, checked against theory and against outcomes (does the model learn?)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gradcheck_cli import TrainOptions, analyze
from gradcheck_cli.diagnose.over_training import applied, growth


def _over_training(report) -> set[str]:  # noqa: ANN001
    return {f.kind for f in report.findings if f.step is not None}


# -- gradient descent on a quadratic: stable exactly below lr = 2 / lambda_max ------------------------------
def _regression() -> tuple[nn.Module, torch.Tensor, torch.Tensor, float]:
    """Least squares with a known input covariance; the loss is F.mse_loss (mean), whose Hessian in the
    weights is 2 X^T X / N, so its largest eigenvalue is computed from the data itself."""
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([2.0, 1.5, 1.0, 0.7, 0.5, 0.3, 0.2, 0.1])
    x = torch.randn(512, 8, generator=g) * scales
    y = x @ torch.randn(8, 1, generator=g)
    lam = float(torch.linalg.eigvalsh(2 * x.T @ x / len(x)).max())
    torch.manual_seed(0)
    return nn.Linear(8, 1, bias=False), x, y, lam


def test_gradient_descent_below_the_stability_limit_is_quiet() -> None:
    model, x, y, lam = _regression()
    report = analyze(model, x, target=y, training=TrainOptions(steps=60, optimizer="sgd", lr=1.9 / lam))
    assert _over_training(report) == set()
    assert report.training.loss[-1] < 0.05 * report.training.loss[0]  # and it learns


def test_gradient_descent_past_the_limit_diverges_at_the_predicted_rate() -> None:
    model, x, y, lam = _regression()
    lr = 2.1 / lam
    report = analyze(model, x, target=y, training=TrainOptions(steps=60, optimizer="sgd", lr=lr))
    t = report.training
    assert {"diverging_loss", "exploding_gradient"} <= _over_training(report)
    grew = growth(t.logged_steps, applied(t.grad_norm, None), report.run.thresholds["train_gradient_growth"], t.loss)
    assert grew is not None
    assert grew.rate == pytest.approx(abs(1 - lr * lam), rel=0.01)  # 1.1x per step
    # the advice's lr bound is the stability limit 2 / lambda_max, read back from the measured rate
    assert t.advice.lr_bound == pytest.approx(2 / lam, rel=0.01)
    exploding = next(f for f in report.findings if f.kind == "exploding_gradient" and f.step is not None)
    assert exploding.step is not None and exploding.step < 30


def test_lr_scan_finds_a_stable_rate_below_the_limit() -> None:
    model, x, y, lam = _regression()
    report = analyze(model, x, target=y, training=TrainOptions(steps=40, optimizer="sgd", lr=3 / lam, lr_scan=True))
    t = report.training
    assert "diverging_loss" in _over_training(report)
    assert list(t.lr_scan.values()) == [True]  # 1.5 / lambda_max: the first halving is stable
    assert t.advice.lr_bound == pytest.approx(1.5 / lam, rel=1e-6) and t.advice.lr_bound < 2 / lam


# -- rectifiers die when the learning rate is far too high ------------------------------------------------
def _relu_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


@pytest.mark.parametrize(("lr", "dies"), [(0.01, False), (0.5, True)])
def test_relu_units_die_at_a_learning_rate_far_too_high(lr: float, dies: bool) -> None:
    x = torch.randn(256, 16, generator=torch.Generator().manual_seed(1))
    report = analyze(_relu_mlp(), x, target=x[:, :1] * 2, training=TrainOptions(steps=50, optimizer="sgd", lr=lr))
    dying = report.training.dying
    assert set(dying) == {"1", "3"}  # both rectifiers measured
    assert ("dying_relu" in _over_training(report)) is dies
    if dies:
        assert max(dying.values()) > 0.1
    else:
        assert max(dying.values()) < 0.02


# -- a tanh RNN past the edge of chaos: exploding over steps, tamed by the recommended clipping ----------------
class _RNNRegressor(nn.Module):
    def __init__(self, radius: float) -> None:
        super().__init__()
        self.rnn = nn.RNN(4, 32, batch_first=True, nonlinearity="tanh")
        with torch.no_grad():
            w = torch.randn(32, 32)
            self.rnn.weight_hh_l0.copy_(w * radius / torch.linalg.eigvals(w).abs().max())
        self.head = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


@pytest.mark.slow
def test_a_tanh_rnn_explodes_over_steps_and_recommended_clipping_prevents_it() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 30, 4)
    y = x[:, :5, 0].sum(1, keepdim=True)
    torch.manual_seed(0)
    model = _RNNRegressor(1.5)
    options = TrainOptions(steps=200, optimizer="sgd", lr=0.1)
    free = analyze(model, x, target=y, training=options)
    assert {"exploding_gradient", "diverging_loss"} <= _over_training(free)
    # it diverged: to Inf/NaN on one VM, to 48 (from 4.5) on another -- the dynamics are chaotic, the outcome is not
    assert not math.isfinite(free.training.loss[-1]) or free.training.loss[-1] > 5 * free.training.loss[0]
    clip = free.training.advice.clip_grad_norm
    assert clip is not None
    clipped = analyze(model, x, target=y, training=TrainOptions(steps=200, optimizer="sgd", lr=0.1, clip_grad_norm=clip))
    assert _over_training(clipped) == set()
    assert clipped.training.loss[-1] < 0.01 * clipped.training.loss[0]  # and it learns


# -- healthy models: no findings at all ------------------------------------------------------------------------
def test_a_he_initialised_mlp_with_adamw_has_no_findings_over_200_steps() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(64, 64), nn.ReLU())], nn.Linear(64, 10))
    for layer in model:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)
    x, y = torch.randn(256, 64), torch.randint(0, 10, (256,))
    report = analyze(model, x, target=y, training=TrainOptions(steps=200, every=2, optimizer="adamw", lr=1e-3))
    assert report.findings == []
    assert report.training.completed == 200 and report.training.logged_steps[-1] == 199
    assert report.training.loss[-1] < 0.1 * report.training.loss[0]


class _PreLNTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 32)
        self.pos = nn.Parameter(torch.randn(16, 32) * 0.02)
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(32)
        self.head = nn.Linear(32, 50)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.enc(self.emb(tokens) + self.pos)))


@pytest.mark.slow
def test_a_small_pre_ln_transformer_with_adamw_has_no_findings_over_200_steps() -> None:
    torch.manual_seed(0)
    model = _PreLNTransformer()
    tokens = torch.randint(0, 50, (32, 16))
    report = analyze(model, tokens, target=torch.roll(tokens, 1, 1),
                     training=TrainOptions(steps=200, every=10, optimizer="adamw", lr=1e-3))
    assert report.findings == []
    assert report.training.loss[-1] < 0.1 * report.training.loss[0]


# -- the caller's model and RNG are untouched -------------------------------------------------------------------
def test_training_leaves_the_callers_model_grads_modes_and_rng_as_they_were() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)).eval()
    model(torch.randn(3, 4)).sum().backward()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.grad.clone() for p in model.parameters()]
    x = torch.randn(32, 4)
    rng = torch.get_rng_state()
    report = analyze(model, x, training=TrainOptions(steps=20, optimizer="sgd", lr=0.1))
    assert report.training.completed == 20
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    assert not model.training and torch.equal(rng, torch.get_rng_state())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_training_without_targets_regresses_onto_random_targets_and_says_so() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))
    report = analyze(model, torch.randn(64, 8), training=TrainOptions(steps=100, optimizer="adam", lr=1e-2))
    assert any("random targets" in note for note in report.notes)
    assert "random targets" in report.training.data
    assert report.training.loss[-1] < report.training.loss[0]  # bounded below: it falls, it does not run away
    assert report.run.loss == "projection"  # the step-0 table keeps its unit-scale projection loss


def test_steps_train_a_model_that_returns_its_own_loss_on_that_loss() -> None:
    """``--steps`` without targets trains on the MSE to a random target -- of a scalar output, that pushed the
    model's own loss towards a random number. A model returning its loss is now trained on it: the first step's
    loss is the model's own, and it falls."""
    torch.manual_seed(0)

    class WithLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.mse_loss(self.net(x), 2 * x[:, :1])

    model, x = WithLoss(), torch.randn(64, 4)
    with torch.no_grad():
        start = model(x).item()
    report = analyze(model, x, training=TrainOptions(steps=40, optimizer="adam", lr=1e-2))
    losses = report.training.loss
    assert losses[0] == pytest.approx(start, rel=1e-6)
    assert losses[-1] < 0.5 * losses[0]
