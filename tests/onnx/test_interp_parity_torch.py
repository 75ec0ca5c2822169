"""Parity of OnnxModule with PyTorch and onnxruntime on real exports.

Small models are exported with the dynamo exporter and the legacy TorchScript
exporter; for each export we check that (a) the interpreter's forward output
equals onnxruntime's and the torch model's, and (b) the gradient norm of every
ONNX initializer that still corresponds to a torch parameter equals the torch
parameter's gradient norm for the same loss ``sum(output * r)``.

A torch parameter "corresponds" to an ONNX initializer when the exporter kept
its name (dynamo keeps FQNs) *and* the initializer still holds the same values
(exporter optimisations such as Conv+BatchNorm folding keep the conv's name but
change its values).  Tied parameters (GPT-2's wte / lm_head) may be split into
several initializers: their ONNX gradients are summed before comparing.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from gradcheck_cli.onnx import OnnxModule, load_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # needed by the dynamo exporter

ATOL = 1e-4
GRAD_RTOL = 1e-4


class CNN(nn.Module):
    """Conv + BatchNorm with a residual connection, pooling and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.c1(x)))
        h = torch.relu(h + self.bn2(self.c2(h)))
        return self.fc(self.pool(h).flatten(1))


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(x)[0])


class GRUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(4, 6, batch_first=False, bidirectional=True)
        self.fc = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.gru(x)[0])


class GPT2(nn.Module):
    """Tiny randomly initialised GPT-2 (never downloads weights)."""

    def __init__(self) -> None:
        super().__init__()
        transformers = pytest.importorskip("transformers")
        cfg = transformers.GPT2Config(
            n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
        )
        self.m = transformers.GPT2LMHeadModel(cfg)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.m(input_ids=ids, use_cache=False).logits


class UNetish(nn.Module):
    """Down/up-sampling conv net: GroupNorm, SiLU, AvgPool, ConvTranspose, bilinear and nearest
    interpolation, InstanceNorm, skip concatenation, PReLU, Softplus."""

    def __init__(self) -> None:
        super().__init__()
        self.inc = nn.Conv2d(3, 8, 3, padding=1)
        self.gn = nn.GroupNorm(2, 8)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.pool = nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.inorm = nn.InstanceNorm2d(16, affine=True)
        self.prelu = nn.PReLU(16)
        self.out = nn.Conv2d(16, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.silu(self.gn(self.inc(x)))
        d = self.pool(self.down(h))
        u = self.up(nn.functional.interpolate(d, scale_factor=2.0, mode="nearest"))
        u = nn.functional.interpolate(u, size=h.shape[-2:], mode="bilinear", align_corners=False)
        y = self.prelu(self.inorm(torch.cat([h, u], 1)))
        return nn.functional.softplus(self.out(y))


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


def _transformer() -> nn.Module:
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple[torch.Tensor, ...]]]] = {
    "mlp": (_mlp, lambda: (torch.randn(4, 6),)),
    "cnn": (CNN, lambda: (torch.randn(2, 3, 8, 8),)),
    "transformer": (_transformer, lambda: (torch.randn(2, 5, 16),)),
    "lstm": (LSTMNet, lambda: (torch.randn(3, 5, 4),)),
    "gru": (GRUNet, lambda: (torch.randn(5, 2, 4),)),
    "gpt2": (GPT2, lambda: (torch.randint(0, 100, (2, 7)),)),
    "unet": (UNetish, lambda: (torch.randn(2, 3, 12, 12),)),
}


@dataclass(frozen=True)
class Case:
    model: str
    dynamo: bool
    opset: int
    optimize: bool = True  # dynamo only
    min_matched: float = 1.0  # fraction of torch parameters that must be compared

    @property
    def id(self) -> str:
        kind = "dynamo" if self.dynamo else "legacy"
        return f"{self.model}-{kind}{'' if self.optimize else '-noopt'}-{self.opset}"


CASES = [
    Case("mlp", True, 18), Case("mlp", False, 11), Case("mlp", False, 13), Case("mlp", False, 17),
    # dynamo always exports BatchNorm with inference semantics, and its optimiser folds it into Conv
    Case("cnn", True, 18, min_matched=0.2), Case("cnn", True, 18, optimize=False),
    Case("cnn", False, 11), Case("cnn", False, 13), Case("cnn", False, 17),
    Case("transformer", True, 18), Case("transformer", False, 17),
    Case("transformer", True, 23),  # opset 23: scaled_dot_product_attention becomes an Attention node
    Case("transformer", True, 25),
    # dynamo constant-folds the LSTM/GRU weights into gate-reordered, concatenated initializers
    Case("lstm", True, 18, min_matched=0.1), Case("lstm", False, 13), Case("lstm", False, 17),
    Case("gru", True, 18, min_matched=0.1), Case("gru", False, 11), Case("gru", False, 17),
    # dynamo splits the tied wte/lm_head weight (Gather table + pre-transposed MatMul copy) and
    # constant-folds the position-embedding slice for the traced sequence length
    Case("gpt2", True, 18, min_matched=0.9), Case("gpt2", True, 23, min_matched=0.9),
    Case("unet", True, 18), Case("unet", True, 18, optimize=False), Case("unet", True, 21),
    Case("unet", False, 13), Case("unet", False, 17),
]


def _quiet_export(model: nn.Module, args: tuple, path: str, case: Case) -> None:
    kw: dict = {"dynamo": case.dynamo, "opset_version": case.opset}
    if case.dynamo:
        kw["optimize"] = case.optimize
    else:
        kw.update(training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, path, **kw)
    finally:
        logging.disable(logging.NOTSET)


def _randomise(model: nn.Module) -> None:
    """Distinct random values everywhere: dynamo's optimiser merges initializers with identical
    contents (fresh deep-copied layers, all-ones LayerNorm weights, zero biases), which would
    turn per-parameter gradients into sums."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)


def _orientation(a: torch.Tensor, b: torch.Tensor) -> str | None:
    """'same', 'T' or 'reshape' if b holds a's values as-is, transposed (2-D) or reshaped; else None."""
    if a.shape == b.shape and torch.equal(a, b):
        return "same"
    if a.dim() == 2 and b.dim() == 2 and a.shape == b.T.shape and torch.equal(a, b.T):
        return "T"
    if a.numel() == b.numel() and torch.equal(a.reshape(-1), b.reshape(-1)):
        return "reshape"
    return None


def _match_gradients(om: OnnxModule, model: nn.Module) -> dict[int, list[torch.Tensor]]:
    """torch parameter id -> gradients (in the torch parameter's orientation) of the ONNX
    initializers that hold its values.  Matched by name first (any alias of a tied parameter),
    then by value for renamed initializers (dynamo stores pre-transposed MatMul weights and
    reshaped GroupNorm/PReLU parameters as ``val_N``).  Folded, concatenated or sliced
    initializers do not match and are not compared."""
    by_name = dict(model.named_parameters(remove_duplicate=False))
    params = [p for _, p in model.named_parameters()]
    out: dict[int, list[torch.Tensor]] = {}
    for attr, p in om.named_parameters():
        tp = by_name.get(om.onnx_name[attr])
        cands = [tp] if tp is not None else [q for q in params if q.numel() == p.numel() and q.numel() > 1]
        hits = [(q, o) for q in cands if (o := _orientation(q.detach(), p.detach())) is not None]
        if len(hits) != 1:
            continue
        q, o = hits[0]
        assert p.grad is not None, f"no gradient for {om.onnx_name[attr]}"
        g = p.grad if o == "same" else p.grad.T if o == "T" else p.grad.reshape(q.shape)
        out.setdefault(id(q), []).append(g)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_parity(case: Case, tmp_path) -> None:
    torch.manual_seed(0)
    build, make_args = MODELS[case.model]
    model = build()
    _randomise(model)
    args = make_args()
    # The legacy exporter is asked for training-mode graphs (BatchNorm uses batch statistics);
    # dynamo exports BatchNorm in inference form whatever the mode, so compare against eval().
    model.train(not case.dynamo)
    path = str(tmp_path / "model.onnx")
    _quiet_export(model, args, path, case)

    om = OnnxModule(load_onnx(path), str(tmp_path))
    out = om(*args)
    out = out[0] if isinstance(out, tuple) else out
    ref = model(*args)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    ort_out = sess.run(None, feeds)[0]
    np.testing.assert_allclose(out.detach().numpy(), ort_out, atol=ATOL, rtol=1e-4, err_msg="vs onnxruntime")
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=1e-4, msg="vs torch")

    r = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (ref * r).sum().backward()
    (out * r).sum().backward()

    onnx_grads = _match_gradients(om, model)
    params = {id(p): (n, p) for n, p in model.named_parameters()}
    compared = 0
    for pid, grads in onnx_grads.items():
        name, tp = params[pid]
        want = tp.grad.norm().item()
        got = torch.stack(grads).sum(0).norm().item()
        assert got == pytest.approx(want, rel=GRAD_RTOL, abs=1e-6), f"grad norm of {name}: {got} != {want}"
        compared += 1
    print(f"\n{case.id}: output max|diff| vs ort {np.abs(out.detach().numpy() - ort_out).max():.2e}, "
          f"grad norms compared for {compared}/{len(params)} parameters")
    assert compared >= case.min_matched * len(params), f"only {compared}/{len(params)} parameters comparable"


def test_dynamic_batch_export_has_symbolic_input_spec(tmp_path) -> None:
    """A dynamo export with a dynamic batch dim declares it symbolically; any batch size runs."""
    torch.manual_seed(0)
    model = _mlp().eval()
    path = str(tmp_path / "dyn.onnx")
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.randn(4, 6),), path, dynamo=True,
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
    finally:
        logging.disable(logging.NOTSET)
    om = OnnxModule(load_onnx(path), str(tmp_path))
    (name, dims, dtype), = om.input_specs
    assert isinstance(dims[0], str) and dims[1] == 6 and dtype == torch.float32
    x = torch.randn(9, 6)
    torch.testing.assert_close(om(x), model(x), atol=ATOL, rtol=1e-4)
