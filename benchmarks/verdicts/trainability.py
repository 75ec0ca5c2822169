"""Trainability ground truth: does each small model learn, and what did gradcheck say at init?

    python benchmarks/verdicts/trainability.py                       # all cases, Markdown table on stdout
    python benchmarks/verdicts/trainability.py --only relu_he_d10,sigmoid_default_d10 --out /tmp/t.json
    python benchmarks/verdicts/trainability.py --no-training                         # the verdict at init only
    python benchmarks/verdicts/trainability.py --only gru_T20 --verify-unchanged     # also train unmonitored, compare

Each :class:`Case` is a small pure-torch model with a known init (healthy or broken) and an expected
outcome from theory. For each case:

1. build it under a fixed seed;
2. run ``gradcheck_cli.analyze(deepcopy(model), x, target=y, loss=...)`` on the freshly initialised
   copy (256 held-out samples, train mode) -- the verdict at init;
3. train the original on its synthetic task with Adam (the primary optimiser; lr 1e-3 for the
   MLP/CNN/transformer tasks, 1e-2 for the recurrent memory tasks -- fixed per task, so within a
   healthy/broken pair only the init differs), a fresh seeded batch per step (the same data stream for
   every case of a task), a fixed number of steps (400; 200 for the CNN task);
4. repeat the training from the same init with SGD (momentum 0.9, lr 10x the task's Adam lr) as a
   secondary measurement, because Adam's per-parameter normalisation hides gradient *scale*
   pathologies that SGD exposes. Nothing was tuned per case; the task settings were calibrated only
   so that the healthy controls (He ReLU depth 5/10, tanh Xavier, LSTM on 10 steps) learn.

**learned** (the criterion, the same for every task): the loss on a fixed held-out set (1024 samples,
drawn once from the task's distribution) after training is finite and below half the task's
*baseline* -- the loss of the best constant predictor on that set: the entropy of the label
frequencies for classification (about ln C), the per-output variance of the target for regression.
The baseline, not the initial loss, is the reference, so a model whose initial loss is huge (exploding
init) does not count as learning by merely getting back to chance.

**flagged**: gradcheck reported at least one finding of severity error or warning at init.
**agree** (measured): flagged == not learned (Adam). ``agree_expected`` compares with the expectation.

**Over training** (unless ``--no-training``): the primary Adam run of step 3 -- the very run whose held-out
loss decides "learned" -- is watched by ``gradcheck_cli.Monitor(model, every=--every)``, created after the
initial evaluation and closed before the final one, with ``monitor.step(loss, optimizer)`` right after
``optimizer.step()``. The Monitor only observes: ``should_stop`` is never acted on, and
``--verify-unchanged`` retrains the same Adam run without it and checks that the final held-out loss and
the logged training curve are bitwise identical. **flagged_training**: ``monitor.report()`` holds at
least one *training* finding -- one naming a step (``Finding.step is not None``: diverging_loss,
exploding_gradient, nonfinite, dying_relu) or of a kind that exists only over training (update_ratio,
which names no step) -- of severity error or warning, the same severities that count at init. The
Monitor's own step-0 rows (measured on the first training batch) are not counted: the verdict at init
is the one above. **flagged_combined** = flagged or flagged_training; **agree_combined**:
flagged_combined == not learned. The JSON also gives the stricter reading where only training findings
of severity error count (the default ``--fail-on error`` gate): ``agree_combined_errors``.

Importing this module imports neither torch nor gradcheck and runs nothing; :func:`cases` returns the
case table (and :func:`tasks` the tasks) for reuse in tests.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "trainability.json"

D_IN, WIDTH, CLASSES = 32, 64, 10
EVAL_N, ANALYZE_N = 1024, 256


# ================================================================ tasks

@dataclass(frozen=True)
class Task:
    name: str
    description: str
    loss: str
    """cross-entropy | mse (also the loss gradcheck analyses with)."""
    sample: Callable[[Any, int], tuple[Any, Any]]
    """(torch.Generator, n) -> (x, y)."""
    batch: int = 128
    steps: int = 400
    lr: float = 1e-3
    """Adam's learning rate (the primary run); SGD (momentum 0.9) uses 10x this."""


def _teacher_cls(gen: Any, n: int) -> tuple[Any, Any]:
    """x ~ N(0, I_32); y = argmax(A x) for a fixed random A (10 classes, roughly balanced)."""
    import torch

    x = torch.randn(n, D_IN, generator=gen)
    return x, (x @ _teacher_matrix().T).argmax(1)


@lru_cache(maxsize=1)
def _teacher_matrix() -> Any:
    import torch

    return torch.randn(CLASSES, D_IN, generator=torch.Generator().manual_seed(1234)) / math.sqrt(D_IN)


def _teacher_reg(gen: Any, n: int) -> tuple[Any, Any]:
    """x ~ N(0, I_32); y = A x with a fixed random A (8 outputs, unit variance each)."""
    import torch

    g = torch.Generator().manual_seed(4321)
    a = torch.randn(8, D_IN, generator=g) / math.sqrt(D_IN)
    x = torch.randn(n, D_IN, generator=gen)
    return x, x @ a.T


def _memory(length: int, classes: int = 4, distractors: int = 4) -> Callable[[Any, int], tuple[Any, Any]]:
    """One-hot sequences: token 0 is the class (0..classes-1), tokens 1..T-1 are random distractors
    (classes..classes+distractors-1); predict the class from the last step: a ``length``-step memory."""

    def sample(gen: Any, n: int) -> tuple[Any, Any]:
        import torch

        y = torch.randint(0, classes, (n,), generator=gen)
        tok = torch.randint(classes, classes + distractors, (n, length), generator=gen)
        tok[:, 0] = y
        return torch.nn.functional.one_hot(tok, classes + distractors).float(), y

    return sample


def _blobs(gen: Any, n: int) -> tuple[Any, Any]:
    """1x16x16 N(0,1) noise plus a +2 3x3 blob at a random place in quadrant y (4 classes)."""
    import torch

    y = torch.randint(0, 4, (n,), generator=gen)
    x = torch.randn(n, 1, 16, 16, generator=gen)
    r = torch.randint(0, 6, (n,), generator=gen) + (y // 2) * 8
    c = torch.randint(0, 6, (n,), generator=gen) + (y % 2) * 8
    for i in range(n):
        x[i, 0, r[i]:r[i] + 3, c[i]:c[i] + 3] += 2.0
    return x, y


def _prev_token(gen: Any, n: int, vocab: int = 16, length: int = 8) -> tuple[Any, Any]:
    """Token sequences (vocab 16, length 8); the target at position t is the token at t-1 (cyclic)."""
    import torch

    x = torch.randint(0, vocab, (n, length), generator=gen)
    return x, torch.roll(x, 1, dims=1)


def tasks() -> dict[str, Task]:
    """MLP/CNN/transformer tasks: Adam lr 1e-3. Recurrent memory tasks: Adam lr 1e-2, batch 32 (at 1e-3 even
    the 10-step task sits at chance for hundreds of steps; the same lr for every model of a task)."""
    return {t.name: t for t in [
        Task("teacher10", "10-class labels argmax(Ax) of a fixed random linear teacher on N(0,1) inputs in R^32",
             "cross-entropy", _teacher_cls),
        Task("linreg8", "8-output linear regression y = Ax on N(0,1) inputs in R^32", "mse", _teacher_reg),
        Task("memory60", "recall the first of 60 one-hot tokens (4 classes, 4 distractor symbols)", "cross-entropy",
             _memory(60), batch=32, lr=1e-2),
        Task("memory20", "recall the first of 20 one-hot tokens (4 classes, 4 distractor symbols)", "cross-entropy",
             _memory(20), batch=32, lr=1e-2),
        Task("memory10", "recall the first of 10 one-hot tokens (4 classes, 4 distractor symbols)", "cross-entropy",
             _memory(10), batch=32, lr=1e-2),
        Task("blobs4", "which quadrant of a noisy 16x16 image holds a bright 3x3 blob (4 classes)", "cross-entropy",
             _blobs, batch=64, steps=200),
        Task("prevtoken", "predict the previous token at every position (vocab 16, length 8, cyclic)", "cross-entropy",
             _prev_token, batch=64),
    ]}


# ================================================================ model builders (torch imported lazily)

def _init_linear(layer: Any, scheme: str, gain: float = 1.0, scale: float = 1.0) -> None:
    from torch import nn

    if scheme == "he":
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)
    elif scheme == "xavier":
        nn.init.xavier_normal_(layer.weight, gain=gain)
        nn.init.zeros_(layer.bias)
    elif scheme != "default":
        raise ValueError(scheme)
    if scale != 1.0:
        layer.weight.data.mul_(scale)


def mlp(depth: int, act: str, init: str = "default", *, gain: float = 1.0, scale: float = 1.0, d_in: int = D_IN,
        width: int = WIDTH, d_out: int = CLASSES, head_scale: float = 1.0, hidden_bias: float | None = None,
        batchnorm: bool = False, symmetric: str | None = None) -> Callable[[], Any]:
    """``depth`` Linear layers in all (depth-1 hidden layers of ``width`` + a head), ``act`` after each
    hidden one. ``init`` applies to every Linear; ``scale`` multiplies the hidden weights, ``head_scale``
    the head's. ``symmetric``: "constant" (every weight of a layer = 1/fan_in) or "rows" (row 0 copied to
    every row), applied to every layer including the head."""

    def build() -> Any:
        import torch
        from torch import nn

        acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "linear": nn.Identity}
        layers: list[Any] = []
        dims = [d_in] + [width] * (depth - 1)
        for i in range(depth - 1):
            lin = nn.Linear(dims[i], dims[i + 1])
            _init_linear(lin, init, gain, scale)
            if hidden_bias is not None:
                nn.init.constant_(lin.bias, hidden_bias)
            layers.append(lin)
            if batchnorm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(acts[act]())
        head = nn.Linear(dims[-1], d_out)
        _init_linear(head, "xavier" if init in ("he", "xavier") else init, 1.0, head_scale)
        layers.append(head)
        net = nn.Sequential(*layers)
        if symmetric:
            with torch.no_grad():
                for m in net:
                    if isinstance(m, nn.Linear):
                        if symmetric == "constant":
                            m.weight.fill_(1.0 / m.in_features)
                            m.bias.zero_()
                        else:
                            m.weight.copy_(m.weight[0:1].expand_as(m.weight))
                            m.bias.fill_(float(m.bias[0]))
        return net

    return build


def resmlp(blocks: int, *, norm: str = "layernorm", layerscale: float | None = None, act: str = "relu",
           d_out: int = CLASSES) -> Callable[[], Any]:
    """Stem Linear(32, 64), ``blocks`` pre-norm residual blocks x + g * W2 act(W1 norm(x)) (or, with
    batchnorm, x + W act(BN(x))), final norm, head. PyTorch default init; g = LayerScale vector if given."""

    def build() -> Any:
        import torch
        from torch import nn

        class Block(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                if norm == "layernorm":
                    self.norm = nn.LayerNorm(WIDTH)
                    self.fc1 = nn.Linear(WIDTH, 2 * WIDTH)
                    self.act = nn.GELU() if act == "gelu" else nn.ReLU()
                    self.fc2 = nn.Linear(2 * WIDTH, WIDTH)
                else:
                    self.norm = nn.BatchNorm1d(WIDTH)
                    self.fc1 = None
                    self.act = nn.ReLU()
                    self.fc2 = nn.Linear(WIDTH, WIDTH)
                self.gamma = nn.Parameter(torch.full((WIDTH,), layerscale)) if layerscale is not None else None

            def forward(self, x: Any) -> Any:
                h = self.act(self.norm(x) if self.fc1 is None else self.fc1(self.norm(x)))
                h = self.fc2(h)
                return x + (self.gamma * h if self.gamma is not None else h)

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.stem = nn.Linear(D_IN, WIDTH)
                self.blocks = nn.Sequential(*[Block() for _ in range(blocks)])
                self.norm = nn.LayerNorm(WIDTH) if norm == "layernorm" else nn.BatchNorm1d(WIDTH)
                self.head = nn.Linear(WIDTH, d_out)

            def forward(self, x: Any) -> Any:
                return self.head(self.norm(self.blocks(self.stem(x))))

        return Net()

    return build


def recurrent(cell: str, *, hidden: int = 32, forget_bias: float | None = None, spectral_radius: float | None = None,
              d_in: int = 8, d_out: int = 4) -> Callable[[], Any]:
    """nn.LSTM / nn.GRU / nn.RNN(tanh), one layer, head on the last step. PyTorch default init, except
    ``forget_bias`` (LSTM: forget-gate bias total, bias_ih slice set, bias_hh slice zeroed) and
    ``spectral_radius`` (RNN: weight_hh = radius x a random orthogonal matrix)."""

    def build() -> Any:
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                kind = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
                self.rnn = kind(d_in, hidden, batch_first=True)
                self.head = nn.Linear(hidden, d_out)
                with torch.no_grad():
                    if forget_bias is not None:
                        self.rnn.bias_ih_l0[hidden:2 * hidden].fill_(forget_bias)
                        self.rnn.bias_hh_l0[hidden:2 * hidden].zero_()
                    if spectral_radius is not None:
                        nn.init.orthogonal_(self.rnn.weight_hh_l0)
                        self.rnn.weight_hh_l0.mul_(spectral_radius)

            def forward(self, x: Any) -> Any:
                out, _ = self.rnn(x)
                return self.head(out[:, -1])

        return Net()

    return build


def cnn_bn() -> Any:
    """Conv(1->16)-BN-ReLU, Conv(16->32, s2)-BN-ReLU, Conv(32->32, s2)-BN-ReLU, flatten, Linear(512, 4).
    PyTorch default init."""
    from torch import nn

    def block(cin: int, cout: int, stride: int) -> list[Any]:
        return [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(*block(1, 16, 1), *block(16, 32, 2), *block(32, 32, 2), nn.Flatten(), nn.Linear(32 * 16, 4))


def transformer(blocks: int = 2, d: int = 32, heads: int = 2, vocab: int = 16, length: int = 8) -> Callable[[], Any]:
    """Token + learned position embeddings (both nn.Embedding, N(0, 1)), ``blocks`` pre-LN blocks (x + MHA(LN x); x + MLP(LN x)),
    final LN, head; nn.MultiheadAttention, bidirectional. PyTorch default init."""

    def build() -> Any:
        from torch import nn

        class Block(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.ln1 = nn.LayerNorm(d)
                self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
                self.ln2 = nn.LayerNorm(d)
                self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

            def forward(self, x: Any) -> Any:
                h = self.ln1(x)
                x = x + self.attn(h, h, h, need_weights=False)[0]
                return x + self.mlp(self.ln2(x))

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.tok = nn.Embedding(vocab, d)
                self.pos = nn.Embedding(length, d)
                self.blocks = nn.Sequential(*[Block() for _ in range(blocks)])
                self.ln = nn.LayerNorm(d)
                self.head = nn.Linear(d, vocab)

            def forward(self, x: Any) -> Any:
                return self.head(self.ln(self.blocks(self.tok(x) + self.pos.weight)))

        return Net()

    return build


# ================================================================ the case table

@dataclass(frozen=True)
class Case:
    name: str
    expected: str
    """learns | fails"""
    reason: str
    build: Callable[[], Any]
    task: str
    pair: str = ""
    """Cases sharing a pair label differ only in their init (same architecture, task, optimiser)."""
    borderline: bool = False
    """Theory does not give a confident expectation (mean-field margins, optimiser-dependent)."""


def cases() -> list[Case]:
    L, F = "learns", "fails"
    return [
        # ---- MLPs on the teacher task
        Case("relu_he_d10", L, "He init keeps ReLU signal variance", mlp(10, "relu", "he"), "teacher10", "relu_d10"),
        Case("sigmoid_default_d10", F, "sigmoid' <= 1/4 per layer and non-centred outputs: vanishing gradient",
             mlp(10, "sigmoid", "default"), "teacher10", "relu_d10"),
        Case("relu_he_d30", L, "He init keeps ReLU signal variance at any depth", mlp(30, "relu", "he"), "teacher10", "relu_d30"),
        Case("relu_xavier_d30", F, "Xavier under ReLU halves the variance per layer: 2^-29 over 30 layers",
             mlp(30, "relu", "xavier"), "teacher10", "relu_d30"),
        Case("relu_default_d30", F, "PyTorch default (std 1/sqrt(3 fan_in)) under ReLU: variance x1/6 per layer",
             mlp(30, "relu", "default"), "teacher10", "relu_d30"),
        Case("tanh_xavier_d5", L, "Xavier is variance-preserving for tanh near 0", mlp(5, "tanh", "xavier"), "teacher10"),
        Case("tanh_xavier_d10", L, "Xavier, tanh, depth 10", mlp(10, "tanh", "xavier"), "teacher10", "tanh_d10"),
        Case("tanh_xavier_x5_d10", F, "weights 5x Xavier: pre-activations ~5x, tanh saturated, chaotic phase",
             mlp(10, "tanh", "xavier", scale=5.0), "teacher10", "tanh_d10"),
        Case("tanh_gain1_d30", L, "sigma_w = 1, sigma_b = 0 is the tanh edge of chaos: gradients preserved, "
             "forward signal decays only ~1/sqrt(depth)", mlp(30, "tanh", "xavier", gain=1.0), "teacher10", "tanh_d30",
             borderline=True),
        Case("tanh_gain53_d30", F, "gain 5/3, zero bias: chaotic phase (chi ~1.2/layer, ~100x gradient growth over 30 "
             "layers, input correlations destroyed)", mlp(30, "tanh", "xavier", gain=5 / 3), "teacher10", "tanh_d30",
             borderline=True),
        Case("resmlp_ln_d20", L, "pre-LN residual blocks x + F(x): identity path carries signal and gradient",
             resmlp(20), "teacher10", "res"),
        Case("layerscale_1e-6_d10", L, "ConvNeXt-style LayerScale 1e-6: blocks start as identity, gamma learns",
             resmlp(10, layerscale=1e-6, act="gelu"), "teacher10", "res"),
        Case("bn_resmlp_d30", L, "pre-activation residual BN blocks x + W relu(BN x)", resmlp(30, norm="batchnorm"),
             "teacher10", "bn_d30"),
        Case("bn_plain_d30", F, "deep plain BatchNorm MLP: gradient explosion at init (Yang et al. 2019)",
             mlp(30, "relu", "default", batchnorm=True), "teacher10", "bn_d30"),
        Case("constant_init_d5", F, "every weight of a layer equal: all units identical forever (symmetry never breaks)",
             mlp(5, "relu", "he", symmetric="constant"), "teacher10", "relu_d5"),
        Case("identical_rows_he_d5", F, "He-scale random row 0 copied to every row: symmetric units",
             mlp(5, "relu", "he", symmetric="rows"), "teacher10", "relu_d5"),
        Case("dead_relu_bias-5_d5", F, "hidden biases -5 (~3.5 pre-activation std): almost every ReLU unit dead",
             mlp(5, "relu", "he", hidden_bias=-5.0), "teacher10", "relu_d5"),
        Case("relu_he_d5", L, "He init, depth 5 (control for the d5 broken cases)", mlp(5, "relu", "he"), "teacher10", "relu_d5"),
        Case("head_x5_d4", F, "head std 5x Xavier: over-confident logits, large initial loss",
             mlp(4, "relu", "he", head_scale=5.0), "teacher10", "relu_d5", borderline=True),
        # ---- deep linear regression (MSE)
        Case("linear_xavier_d10", L, "deep linear net, Xavier: variance preserved", mlp(10, "linear", "xavier", d_out=8),
             "linreg8", "linear_d10"),
        Case("linear_x5_d10", F, "deep linear net, weights 5x Xavier: output ~5^10 = 1e7x too large (exploding)",
             mlp(10, "linear", "xavier", scale=5.0, d_out=8), "linreg8", "linear_d10"),
        # ---- CNN, transformer
        Case("cnn_bn", L, "small CNN with BatchNorm, default init", cnn_bn, "blobs4"),
        Case("transformer_preln_2", L, "2 pre-LN transformer blocks (nn.MultiheadAttention), default init",
             transformer(2), "prevtoken"),
        # ---- recurrent: the 60-step memory asked for, and a 20-step one where the pairs can separate
        Case("lstm_forget1_T60", L, "forget-gate bias 1: cell state carried over 60 steps",
             recurrent("lstm", forget_bias=1.0), "memory60", "lstm_T60", borderline=True),
        Case("lstm_default_T60", F, "default init: forget gate ~0.5, memory decays ~0.5^60 (long-range dependency lost)",
             recurrent("lstm"), "memory60", "lstm_T60"),
        Case("lstm_forget1_T20", L, "forget-gate bias 1 over 20 steps (sigmoid(1)^20 ~ 2e-3)",
             recurrent("lstm", forget_bias=1.0), "memory20", "lstm_T20"),
        Case("lstm_default_T20", F, "default init over 20 steps (~0.5^20 ~ 1e-6)", recurrent("lstm"), "memory20", "lstm_T20",
             borderline=True),
        Case("rnn_orth1_T60", L, "tanh RNN, orthogonal recurrence (radius 1): gradient norm roughly preserved",
             recurrent("rnn", spectral_radius=1.0), "memory60", "rnn_T60", borderline=True),
        Case("rnn_radius1.5_T60", F, "tanh RNN, recurrent spectral radius 1.5: explodes through time / saturates",
             recurrent("rnn", spectral_radius=1.5), "memory60", "rnn_T60"),
        Case("rnn_orth1_T20", L, "tanh RNN, orthogonal recurrence (radius 1), 20 steps",
             recurrent("rnn", spectral_radius=1.0), "memory20", "rnn_T20", borderline=True),
        Case("rnn_radius1.5_T20", F, "tanh RNN, spectral radius 1.5, 20 steps", recurrent("rnn", spectral_radius=1.5),
             "memory20", "rnn_T20"),
        Case("gru_T10", L, "GRU, default init, 10-step memory", recurrent("gru"), "memory10"),
        Case("gru_T20", L, "GRU, default init, 20-step memory (?)", recurrent("gru"), "memory20", borderline=True),
        Case("gru_T60", F, "GRU, default init, 60-step memory (?)", recurrent("gru"), "memory60", borderline=True),
    ]


# ================================================================ running

def _make_optimizer(name: str, lr: float, params: Any) -> Any:
    import torch

    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _loss_fn(task: Task) -> Callable[[Any, Any], Any]:
    import torch.nn.functional as F

    if task.loss == "mse":
        return F.mse_loss

    def ce(out: Any, y: Any) -> Any:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    return ce


def _baseline(task: Task, y: Any) -> float:
    """Loss of the best constant predictor on the eval set."""
    import torch

    if task.loss == "mse":
        return float(((y - y.mean(0)) ** 2).mean())
    p = torch.bincount(y.reshape(-1)).float()
    p = p[p > 0] / p.sum()
    return float(-(p * p.log()).sum())


def _evaluate(model: Any, task: Task, x: Any, y: Any) -> tuple[float, float | None]:
    import torch

    with torch.no_grad():  # train mode, as in training: BatchNorm normalises with the eval batch's statistics
        out = model(x)
        loss = float(_loss_fn(task)(out, y))
        acc = float((out.argmax(-1) == y).float().mean()) if task.loss != "mse" else None
    return loss, acc


def train(model: Any, task: Task, optim: tuple[str, float], data_seed: int, eval_set: tuple[Any, Any],
          monitor_every: int | None = None) -> tuple[dict[str, Any], Any]:
    """Train in place; returns losses on the eval set (evaluated in train mode, one batch of EVAL_N) and,
    with ``monitor_every``, the ``gradcheck_cli.Monitor`` that watched the loop (closed; None otherwise).
    The Monitor exists only between the initial and the final evaluation, so neither is instrumented."""
    import torch

    x_eval, y_eval = eval_set
    gen = torch.Generator().manual_seed(data_seed)
    loss_fn = _loss_fn(task)
    opt = _make_optimizer(optim[0], optim[1], model.parameters())
    init_loss, init_acc = _evaluate(model, task, x_eval, y_eval)
    curve, diverged_at = [], None
    t0 = time.perf_counter()
    model.train()
    monitor = None
    if monitor_every is not None:
        from gradcheck_cli import Monitor

        monitor = Monitor(model, every=monitor_every)
    try:
        for step in range(task.steps):
            x, y = task.sample(gen, task.batch)
            loss = loss_fn(model(x), y)
            if not torch.isfinite(loss):
                diverged_at = step
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if monitor is not None:
                monitor.step(loss, opt)  # observes only: monitor.should_stop is deliberately ignored
            if step % 50 == 0:
                curve.append(round(float(loss.detach()), 5))
    finally:
        if monitor is not None:
            monitor.close()  # hooks off before the final evaluation
    seconds = time.perf_counter() - t0
    final_loss, final_acc = _evaluate(model, task, x_eval, y_eval) if diverged_at is None else (float("nan"), None)
    return {"optimizer": optim[0], "lr": optim[1], "steps": task.steps, "batch": task.batch,
            "initial_loss": init_loss, "final_loss": final_loss, "initial_acc": init_acc, "final_acc": final_acc,
            "diverged_at_step": diverged_at, "train_curve_every_50": curve, "seconds": round(seconds, 3),
            "monitored": monitor is not None}, monitor


TRAINING_ONLY_KINDS = frozenset({"diverging_loss", "dying_relu", "update_ratio"})
"""Finding kinds that exist only over training (update_ratio names no step, so ``step`` alone misses it)."""


def _training_view(monitor: Any) -> dict[str, Any]:
    """The Monitor's findings over training (see the module docstring), for the JSON row."""
    if monitor is None or monitor.steps == 0:
        return {"status": "no_steps", "findings": [], "flagged": False, "flagged_errors": False,
                "flagged_kinds": {"error": [], "warning": [], "info": []}}
    try:
        report = monitor.report()
    except Exception as exc:  # noqa: BLE001
        return {"status": "report_failed", "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                "findings": [], "flagged": False, "flagged_errors": False,
                "flagged_kinds": {"error": [], "warning": [], "info": []}}
    over = [f for f in report.findings if f.step is not None or f.kind in TRAINING_ONLY_KINDS]
    findings = [{"kind": f.kind, "severity": f.severity, "layer": f.layer, "step": f.step, "value": _num(f.value),
                 "threshold": _num(f.threshold), "message": f.message} for f in over]
    t = report.training
    return {"status": "ok", "every": monitor.every, "steps_seen": monitor.steps,
            "logged_steps": len(t.logged_steps) if t is not None else 0,
            "should_stop": monitor.should_stop, "verdict": report.summary.verdict, "findings": findings,
            "step0_findings": sorted({f.kind for f in report.findings if not any(f is g for g in over)}),
            "flagged_kinds": {sev: sorted({f["kind"] for f in findings if f["severity"] == sev})
                              for sev in ("error", "warning", "info")},
            "flagged": any(f["severity"] in ("error", "warning") for f in findings),
            "flagged_errors": any(f["severity"] == "error" for f in findings)}


def _learned(result: dict[str, Any], baseline: float) -> bool:
    return math.isfinite(result["final_loss"]) and result["final_loss"] < 0.5 * baseline


def _num(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return _num(obj)


def run_case(case: Case, seed: int = 0, monitor_every: int | None = 10, verify_unchanged: bool = False) -> dict[str, Any]:
    """One case; ``monitor_every`` None skips the verdict over training (``--no-training``)."""
    import torch

    from gradcheck_cli import analyze

    task = tasks()[case.task]
    row: dict[str, Any] = {"name": case.name, "expected": case.expected, "reason": case.reason, "task": case.task,
                           "loss": task.loss, "pair": case.pair, "borderline": case.borderline, "status": "ok"}
    t0 = time.perf_counter()
    try:
        torch.manual_seed(seed)
        model = case.build()
    except Exception as exc:  # noqa: BLE001
        row.update(status="build_failed", error=f"{type(exc).__name__}: {exc}")
        return row
    init_state = copy.deepcopy(model.state_dict())
    row["parameters"] = sum(p.numel() for p in model.parameters())
    eval_set = task.sample(torch.Generator().manual_seed(10_000 + seed), EVAL_N)
    baseline = _baseline(task, eval_set[1])
    row["baseline_loss"] = baseline

    # gradcheck at init, on a deep copy of the fresh model
    x_a, y_a = eval_set[0][:ANALYZE_N], eval_set[1][:ANALYZE_N]
    t1 = time.perf_counter()
    try:
        report = analyze(copy.deepcopy(model), x_a, target=y_a, loss=task.loss, mode="train")
        row["analyze_seconds"] = round(time.perf_counter() - t1, 3)
        row["verdict"] = report.summary.verdict
        row["counts"] = dict(report.summary.findings)
        row["first_bad_layer"] = report.summary.first_bad_layer
        row["findings"] = [{"kind": f.kind, "severity": f.severity, "layer": f.layer, "value": _num(f.value),
                            "threshold": _num(f.threshold), "message": f.message} for f in report.findings]
        row["n_layers"] = len(report.layers)
    except Exception as exc:  # noqa: BLE001
        row.update(status="analyze_failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                   findings=[], counts={})
    flagged_kinds = sorted({f["kind"] for f in row["findings"] if f["severity"] in ("error", "warning")})
    row["flagged_kinds"] = {sev: sorted({f["kind"] for f in row["findings"] if f["severity"] == sev})
                            for sev in ("error", "warning", "info")}
    row["flagged"] = bool(flagged_kinds)

    # training: primary Adam, secondary SGD, both from the same init and the same data stream
    # (the Adam run is the monitored one: the same run decides "learned" and the verdict over training)
    runs = {}
    for optim in (("adam", task.lr), ("sgd", 10 * task.lr)):
        model.load_state_dict(init_state)
        torch.manual_seed(seed)
        every = monitor_every if optim[0] == "adam" else None
        res, monitor = train(model, task, optim, data_seed=seed + 1, eval_set=eval_set, monitor_every=every)
        res["learned"] = _learned(res, baseline)
        runs[optim[0]] = res
        if every is not None:
            row["training"] = _training_view(monitor)
    row["train"] = runs
    row["learned"] = runs["adam"]["learned"]
    row["learned_sgd"] = runs["sgd"]["learned"]
    row["matches_expectation"] = row["learned"] == (case.expected == "learns")
    row["agree"] = row["flagged"] == (not row["learned"])
    row["agree_expected"] = row["flagged"] == (case.expected == "fails")
    if "training" in row:
        row["flagged_training"] = row["training"]["flagged"]
        row["flagged_combined"] = row["flagged"] or row["flagged_training"]
        row["agree_combined"] = row["flagged_combined"] == (not row["learned"])
        row["agree_combined_expected"] = row["flagged_combined"] == (case.expected == "fails")
        row["agree_combined_errors"] = (row["flagged"] or row["training"]["flagged_errors"]) == (not row["learned"])
    if verify_unchanged and monitor_every is not None:
        model.load_state_dict(init_state)
        torch.manual_seed(seed)
        bare, _ = train(model, task, ("adam", task.lr), data_seed=seed + 1, eval_set=eval_set)
        a = runs["adam"]
        same = {k: _same(a[k], bare[k]) for k in ("initial_loss", "final_loss", "final_acc", "diverged_at_step",
                                                  "train_curve_every_50")}
        row["unmonitored"] = {"final_loss": bare["final_loss"], "learned": _learned(bare, baseline),
                              "seconds": bare["seconds"], "identical": same, "all_identical": all(same.values())}
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def _same(a: Any, b: Any) -> bool:
    """Bitwise-equal results (NaN equals NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _fmt_val(v: Any) -> str:
    """A finding's value or threshold (non-finite ones arrive as strings from :func:`_num`)."""
    return f"{v:.3g}" if isinstance(v, (int, float)) else str(v)


def _fmt_loss(v: Any) -> str:
    if not isinstance(v, float) or not math.isfinite(v):
        return "nan"
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


def _training_kinds(t: dict[str, Any]) -> str:
    """``E: diverging_loss@120; W: update_ratio`` -- each counted kind once, at its earliest step."""
    if t["status"] != "ok":
        return t["status"].replace("_", " ") + (f": {t['error']}" if "error" in t else "")
    parts = []
    for sev, tag in (("error", "E"), ("warning", "W")):
        first: dict[str, int | None] = {}
        for f in t["findings"]:
            if f["severity"] == sev:
                prev = first.get(f["kind"], "absent")
                step = f["step"]
                if prev == "absent" or (step is not None and (prev is None or step < prev)):
                    first[f["kind"]] = step
        if first:
            parts.append(f"{tag}: " + ", ".join(f"{k}@{v}" if v is not None else k for k, v in sorted(first.items())))
    return "; ".join(parts) or "none"


def _agreement(agree: bool, flagged: bool, expected: str) -> str:
    if agree:
        return "yes"
    if flagged:
        return "no: false alarm"
    return "no: miss" if expected == "fails" else "no: not flagged, healthy-by-design did not learn"


def table(rows: list[dict[str, Any]]) -> str:
    training = any("training" in r for r in rows)
    extra_head = " gradcheck over training (Adam run; kind@first step) | agreement (init or training) |" if training else ""
    lines = ["| model | expected | learned (Adam) | loss init -> final (baseline) | learned (SGD) | gradcheck at init "
             "(E: errors; W: warnings) | agreement (flagged iff fails) |" + extra_head,
             "|---|---|---|---|---|---|---|" + ("---|---|" if training else "")]
    for r in rows:
        if r["status"] == "build_failed":
            lines.append(f"| {r['name']} | {r['expected']} | - | - | - | build failed: {r['error']} | - |"
                         + (" - | - |" if training else ""))
            continue
        exp = f"{r['expected']}{' (?)' if r['borderline'] else ''}: {r['reason']}"
        a, s = r["train"]["adam"], r["train"]["sgd"]
        learned = ("yes" if r["learned"] else "no") + ("" if r["matches_expectation"] else " (unexpected)")
        sgd = ("yes" if r["learned_sgd"] else "no") + (f" (diverged @{s['diverged_at_step']})" if s["diverged_at_step"] is not None else "")
        kinds = []
        if r["flagged_kinds"]["error"]:
            kinds.append("E: " + ", ".join(r["flagged_kinds"]["error"]))
        if r["flagged_kinds"]["warning"]:
            kinds.append("W: " + ", ".join(r["flagged_kinds"]["warning"]))
        gc = "; ".join(kinds) or ("analyze failed: " + r["error"] if r["status"] == "analyze_failed" else "none")
        agree = _agreement(r["agree"], r["flagged"], r["expected"])
        extra = ""
        if training:
            if "training" in r:
                changed = " (changes the verdict)" if r["flagged_training"] and not r["flagged"] else ""
                extra = (f" {_training_kinds(r['training'])}{changed} | "
                         f"{_agreement(r['agree_combined'], r['flagged_combined'], r['expected'])} |")
            else:
                extra = " - | - |"
        lines.append(f"| {r['name']} | {exp} | {learned} | {_fmt_loss(a['initial_loss'])} -> {_fmt_loss(a['final_loss'])} "
                     f"({r['baseline_loss']:.3g}) | {sgd} | {gc} | {agree} |{extra}")
    return "\n".join(lines)


def changed_by_training(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cases not flagged at init but flagged over training: which findings (kind, severity, layer, step)."""
    out = []
    for r in rows:
        if r.get("flagged_training") and not r["flagged"]:
            counted = [f for f in r["training"]["findings"] if f["severity"] in ("error", "warning")]
            out.append({"name": r["name"], "learned": r["learned"], "expected": r["expected"],
                        "now": "agrees" if r["agree_combined"] else "false alarm",
                        "findings": [{k: f[k] for k in ("kind", "severity", "layer", "step", "value", "threshold")}
                                     for f in counted]})
    return out


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import source_state

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)})")
    parser.add_argument("--only", default=None, help="comma list of case names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: stable timings)")
    parser.add_argument("--no-training", action="store_true",
                        help="skip the verdict over training (no Monitor on the Adam run): the verdict at init only")
    parser.add_argument("--every", type=int, default=10, help="Monitor(every=N) on the Adam run (default 10)")
    parser.add_argument("--verify-unchanged", action="store_true",
                        help="also train each case's Adam run without the Monitor and check the results are identical")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be at least 1")
    if args.no_training and args.verify_unchanged:
        parser.error("--verify-unchanged compares with the monitored run: drop --no-training")
    monitor_every = None if args.no_training else args.every

    t_start = time.perf_counter()
    import torch

    torch.set_num_threads(args.threads)

    import gradcheck_cli

    table_rows = cases()
    if args.only:
        wanted = {n.strip() for n in args.only.split(",") if n.strip()}
        unknown = wanted - {c.name for c in table_rows}
        if unknown:
            parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
        table_rows = [c for c in table_rows if c.name in wanted]
    rows = []
    for case in table_rows:
        row = run_case(case, seed=args.seed, monitor_every=monitor_every, verify_unchanged=args.verify_unchanged)
        rows.append(row)
        if row["status"] == "build_failed":
            print(f"  {case.name:<22} build failed: {row['error']}", file=sys.stderr, flush=True)
            continue
        a = row["train"]["adam"]
        over = f"  training: {_training_kinds(row['training'])[:80]}" if "training" in row else ""
        same = ("" if "unmonitored" not in row else
                "  unmonitored: identical" if row["unmonitored"]["all_identical"] else "  unmonitored: DIFFERS")
        print(f"  {case.name:<22} {row['seconds']:6.2f}s  learned={row['learned']!s:<5} sgd={row['learned_sgd']!s:<5} "
              f"{_fmt_loss(a['initial_loss'])}->{_fmt_loss(a['final_loss'])}  {row.get('verdict', row.get('error'))[:110]}"
              f"{over}{same}", file=sys.stderr, flush=True)
    total = time.perf_counter() - t_start
    ok = [r for r in rows if r["status"] != "build_failed"]
    doc = {"meta": {"torch": torch.__version__, "gradcheck": gradcheck_cli.__version__, "source": source_state(Path(gradcheck_cli.__file__).parent), "seed": args.seed,
                    "criterion": "learned = final held-out loss finite and < 0.5 x baseline (best constant predictor)",
                    "flagged": "at least one gradcheck finding of severity error or warning at init",
                    "primary_optimizer": "Adam, lr = task lr",
                    "secondary_optimizer": "SGD, momentum 0.9, lr = 10 x task lr",
                    "tasks": {t.name: {"description": t.description, "loss": t.loss, "batch": t.batch, "steps": t.steps,
                                       "adam_lr": t.lr, "sgd_lr": 10 * t.lr}
                              for t in tasks().values()},
                    "total_seconds": round(total, 2), "cases": len(rows),
                    "agree": sum(r["agree"] for r in ok), "agree_expected": sum(r["agree_expected"] for r in ok),
                    "false_alarms": [r["name"] for r in ok if r["flagged"] and r["learned"]],
                    "misses": [r["name"] for r in ok if not r["flagged"] and not r["learned"] and r["expected"] == "fails"],
                    "healthy_not_learned_not_flagged": [r["name"] for r in ok if not r["flagged"] and not r["learned"]
                                                        and r["expected"] == "learns"],
                    "unexpected_outcomes": [r["name"] for r in ok if not r["matches_expectation"]]},
           "cases": rows}
    meta = doc["meta"]
    if monitor_every is not None:
        trained = [r for r in ok if "training" in r]
        meta.update({
            "training_verdict": (f"gradcheck_cli.Monitor(model, every={monitor_every}) around the primary Adam run (the run "
                                 "that decides learned); flagged_training = a training finding (step is not None, or kind "
                                 f"in {sorted(TRAINING_ONLY_KINDS)}) of severity error or warning; combined = flagged at "
                                 "init or flagged over training"),
            "monitor_every": monitor_every,
            "agree_combined": sum(r["agree_combined"] for r in trained),
            "agree_combined_expected": sum(r["agree_combined_expected"] for r in trained),
            "agree_combined_errors_only": sum(r["agree_combined_errors"] for r in trained),
            "changed_by_training": changed_by_training(trained),
            "false_alarms_combined": [r["name"] for r in trained if r["flagged_combined"] and r["learned"]],
            "misses_combined": [r["name"] for r in trained if not r["flagged_combined"] and not r["learned"]
                                and r["expected"] == "fails"],
            "healthy_not_learned_not_flagged_combined": [r["name"] for r in trained if not r["flagged_combined"]
                                                         and not r["learned"] and r["expected"] == "learns"],
            "training_view_failures": [r["name"] for r in trained if r["training"]["status"] != "ok"],
        })
        if args.verify_unchanged:
            meta["unmonitored_identical"] = [r["name"] for r in trained if r["unmonitored"]["all_identical"]]
            meta["unmonitored_differs"] = [r["name"] for r in trained if not r["unmonitored"]["all_identical"]]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_clean(doc), indent=1, allow_nan=False) + "\n")
    print(table(rows))
    m = doc["meta"]
    print(f"\n{len(rows)} cases; agreement with measured outcome {m['agree']}/{len(ok)}, with expectation "
          f"{m['agree_expected']}/{len(ok)}\nfalse alarms (flagged, learned): {', '.join(m['false_alarms']) or '-'}\n"
          f"misses (broken by design, not flagged, did not learn): {', '.join(m['misses']) or '-'}\n"
          f"healthy by design, not flagged, did not learn: {', '.join(m['healthy_not_learned_not_flagged']) or '-'}\n"
          f"outcome differs from expectation: {', '.join(m['unexpected_outcomes']) or '-'}")
    if "agree_combined" in m:
        print(f"\nover training (Monitor every {m['monitor_every']} on the Adam run): agreement of init + training verdicts "
              f"with measured outcome {m['agree_combined']}/{len(ok)}, with expectation {m['agree_combined_expected']}/{len(ok)} "
              f"(training errors only: {m['agree_combined_errors_only']}/{len(ok)})\n"
              f"false alarms (init or training): {', '.join(m['false_alarms_combined']) or '-'}\n"
              f"misses (init or training): {', '.join(m['misses_combined']) or '-'}\n"
              f"healthy by design, not flagged, did not learn (init or training): "
              f"{', '.join(m['healthy_not_learned_not_flagged_combined']) or '-'}")
        print("verdict changed by the training view:" + ("" if m["changed_by_training"] else " -"))
        for c in m["changed_by_training"]:
            what = "; ".join(f"{f['severity']} {f['kind']} at step {f['step']} on {f['layer']} (value {_fmt_val(f['value'])}, "
                             f"threshold {_fmt_val(f['threshold'])})" if f["step"] is not None else
                             f"{f['severity']} {f['kind']} (median over logged steps) on {f['layer']} "
                             f"(value {_fmt_val(f['value'])}, threshold {_fmt_val(f['threshold'])})" for f in c["findings"])
            print(f"  {c['name']} (learned={c['learned']}; now {c['now']}): {what}")
        if m["training_view_failures"]:
            print(f"training view failed: {', '.join(m['training_view_failures'])}")
        if "unmonitored_identical" in m:
            print(f"unmonitored retraining identical (final loss, acc, curve): {len(m['unmonitored_identical'])}/{len(ok)}"
                  f"; differs: {', '.join(m['unmonitored_differs']) or '-'}")
    print(f"total {total:.1f}s; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
