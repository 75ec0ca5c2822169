"""Norms taken in the last backward pass (HotSquares) equal the ones read after it, bit for bit:
large and small parameters, a tied weight, several batches, and a parameter the last batch skips."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradcheck_cli.measure.hot import HotSquares
from gradcheck_cli.measure.params import parameter_measures


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(300, 300)
        self.b = nn.Linear(300, 300)
        self.b.weight = self.a.weight  # tied: one parameter, two uses
        self.c = nn.Linear(300, 8)
        self.skipped = nn.Linear(300, 300)  # used by the first batch only

    def forward(self, x: torch.Tensor, first: bool) -> torch.Tensor:
        h = self.b(torch.relu(self.a(x)))
        if first:
            h = h + self.skipped(x)
        return self.c(h)


def _measures(hot: bool) -> list:
    torch.manual_seed(0)
    model = Tied()
    params = dict(model.named_parameters())
    taps = HotSquares(params) if hot else None
    for i in range(3):
        if taps is not None:
            taps.armed = i == 2
        model(torch.randn(16, 300), first=i == 0).square().sum().backward()
    if taps is not None:
        taps.remove()
        # only a.weight (tied: one accumulation, once) is large and in the last batch; skipped.weight is
        # read after the pass, the small ones always are
        assert list(taps.grads) == [id(model.a.weight)]
    return parameter_measures(model, params, 3, hot=taps)


def test_hot_norms_equal_cold_ones_bitwise() -> None:
    cold, hot = _measures(False), _measures(True)
    assert [(m.name, m.weight_norm, m.grad_norm) for m in hot] == [(m.name, m.weight_norm, m.grad_norm) for m in cold]
    assert any(m.name == "skipped.weight" and m.grad_norm for m in hot)  # its gradient from batch 1, read after


def _deviations(model: nn.Module, x: torch.Tensor, hot: bool,
                dims: dict[str, int] | None = None) -> dict[str, float | None]:
    params = dict(model.named_parameters())
    dims = dims or {name: 0 for name in params if name.endswith("weight")}
    taps = HotSquares(params, lambda: dims) if hot else None
    if taps is not None:
        taps.armed = True
    try:
        model(x).square().sum().backward()
    finally:
        if taps is not None:
            taps.remove()
    if taps is not None:
        assert set(taps.spreads) == {id(p) for p in params.values() if p.dim() == 2 and p.numel() >= 1 << 16}
    out = {m.name: m.unit_deviation for m in parameter_measures(model, params, 1, dims, hot=taps)}
    model.zero_grad(set_to_none=True)
    return out


def test_hot_unit_spreads_match_the_exact_centring() -> None:
    """Random weights take the shortcut (within 1e-5 of exact centring); near-identical units and a
    constant weight fall back to the exact pass, so they come out equal to it bit for bit (0 for constant)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(300, 400), nn.ReLU(), nn.Linear(400, 300), nn.ReLU(), nn.Linear(300, 300), nn.Linear(300, 4))
    with torch.no_grad():
        model[2].weight.copy_(model[2].weight[:1].expand(300, 400) + 1e-6 * torch.randn(300, 400))  # near-identical
        model[4].weight.fill_(0.01)  # identical units
    x = torch.randn(8, 300)
    cold, hot = _deviations(model, x, hot=False), _deviations(model, x, hot=True)
    assert hot["0.weight"] != cold["0.weight"]  # the shortcut ran (float32 terms, not the centring)
    assert hot["0.weight"] == pytest.approx(cold["0.weight"], rel=1e-5)
    assert hot["2.weight"] == cold["2.weight"] and hot["4.weight"] == cold["4.weight"] == 0.0
    assert hot["5.weight"] == cold["5.weight"]  # small: centred with the other small weights either way


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_hot_unit_spreads_in_other_precisions(dtype: torch.dtype) -> None:
    """The shortcut's terms keep the weight's precision (float32 at least for half weights: their
    column sums are taken in float32) and are combined in float64 on the host, so they agree with the
    exact centring in every dtype a model may train in."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(300, 400), nn.ReLU(), nn.Linear(400, 4)).to(dtype)
    x = torch.randn(8, 300, dtype=dtype)
    cold, hot = _deviations(model, x, hot=False), _deviations(model, x, hot=True)
    assert hot["0.weight"] != cold["0.weight"]  # the shortcut ran
    assert hot["0.weight"] == pytest.approx(cold["0.weight"], rel=1e-9 if dtype == torch.float64 else 1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_hot_unit_spreads_of_transposed_weights(dtype: torch.dtype) -> None:
    """A weight stored (in, out) -- Hugging Face's Conv1D -- has its units along dim 1: the shortcut's
    column sums are then its row sums (W 1, not 1^T W), and agree with the exact centring along dim 1."""
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(3)
    model = nn.Sequential(Conv1D(400, 300), nn.ReLU(), nn.Linear(400, 4)).to(dtype)
    with torch.no_grad():
        model[0].weight.mul_(torch.linspace(0.5, 2.0, 400, dtype=dtype))  # units of different scales
    x = torch.randn(8, 300, dtype=dtype)
    dims = {"0.weight": 1, "2.weight": 0}
    cold, hot = _deviations(model, x, hot=False, dims=dims), _deviations(model, x, hot=True, dims=dims)
    if dtype != torch.float64:  # float64's shortcut may land on the centring's bits
        assert hot["0.weight"] != cold["0.weight"]  # the shortcut ran
    # float64 to 1e-12: the shortcut's terms are float64 (a float32 sum of squares was off by ~2e-8 here)
    assert hot["0.weight"] == pytest.approx(cold["0.weight"], rel=1e-12 if dtype == torch.float64 else 1e-5)
    w = model[0].weight.detach().double()
    along_units = (w - w.mean(dim=1, keepdim=True)).norm().item()  # each unit is a column of (in, out)
    assert cold["0.weight"] == pytest.approx(along_units, rel=1e-5)


class _Cold:
    """HotSquares that takes nothing: every norm and spread is read after the passes."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.armed = False
        self.weights: dict = {}
        self.grads: dict = {}
        self.spreads: dict = {}

    def take_weights(self, weights: object) -> None:
        pass

    def remove(self) -> None:
        pass


class _EditsAnEarlierWeight(nn.Module):
    """A forward that scales its first layer's weight in place after that layer ran (the input needs no
    gradient, so autograd kept no copy of the weight and allows it): the weight taken in the forward is
    stale by the end, and the report must give the edited one."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(300, 300)
        self.frozen = nn.Linear(300, 300).requires_grad_(False)  # no gradient hook: the forward's read only
        self.head = nn.Linear(300, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.first(x))
        with torch.no_grad():
            self.first.weight.mul_(1.5)
        return self.head(torch.relu(self.frozen(h)))


def _report_numbers(model_factory, monkeypatch: pytest.MonkeyPatch, cold: bool,
                    dtype: torch.dtype = torch.float32) -> tuple[list, list]:
    from gradcheck_cli import analyze
    from gradcheck_cli.analysis import engine

    taken: list[int] = []
    if cold:
        monkeypatch.setattr(engine, "HotSquares", _Cold)
    else:
        real = HotSquares._take_weight
        monkeypatch.setattr(HotSquares, "_take_weight", lambda self, w, p, dim: (taken.append(id(p)), real(self, w, p, dim)))
    torch.manual_seed(0)
    model = model_factory().to(dtype)
    report = analyze(model, torch.randn(16, 300).to(dtype), batches=2, batch_size=8)
    monkeypatch.undo()
    large = [p for p in model.parameters() if p.numel() >= 1 << 16]
    if not cold:  # each large weight once, the edited one twice (forward, then again in the backward)
        edited = [model.first.weight] if isinstance(model, _EditsAnEarlierWeight) else []
        assert sorted(taken) == sorted(id(p) for p in large + edited)
    return ([(p.name, p.weight_norm, p.grad_norm) for p in report.parameters],
            [(layer.name, layer.init.unit_spread if layer.init else None) for layer in report.layers])


@pytest.mark.parametrize("factory", [
    lambda: nn.Sequential(nn.Linear(300, 400), nn.ReLU(), nn.Linear(400, 300), nn.Tanh(), nn.Linear(300, 4)),
    lambda: nn.Sequential(nn.Unflatten(1, (75, 4)), nn.Conv1d(75, 1024, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4096, 8)),
    _EditsAnEarlierWeight,
], ids=["mlp", "conv", "edited-in-forward"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_weights_taken_in_the_forward_equal_the_cold_reading(factory, dtype: torch.dtype,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the whole engine: weights read right after their layer's forward (and gradients in the
    backward) give the cold path's norms bit for bit and its unit spreads within the shortcut's
    precision -- also for a frozen weight, and for a weight the forward edits after its layer ran,
    whose version counter sends it to be read again (without that check its norm is 1.5x off); in
    bfloat16 (squares and column sums taken in float32) and float64 alike."""
    hot_params, hot_spreads = _report_numbers(factory, monkeypatch, cold=False, dtype=dtype)
    cold_params, cold_spreads = _report_numbers(factory, monkeypatch, cold=True, dtype=dtype)
    assert hot_params == cold_params
    assert [name for name, _ in hot_spreads] == [name for name, _ in cold_spreads]
    for (name, hot), (_, cold) in zip(hot_spreads, cold_spreads):
        assert (hot is None) == (cold is None), name
        if hot is not None:
            assert hot == pytest.approx(cold, rel=1e-5), name


class _Tied(nn.Module):
    """A head sharing its weight with the embedding before it in the forward. ``head_first``: the head is
    registered first, so the parameter is named after it (a Linear, units along dim 0) though the
    embedding (no units) reads it first; else after the embedding (GPT-2's layout), the head holding it
    under an alias."""

    def __init__(self, head_first: bool) -> None:
        super().__init__()
        if head_first:
            self.head = nn.Linear(300, 400, bias=False)
        self.embed = nn.Embedding(400, 300)
        if not head_first:
            self.head = nn.Linear(300, 400, bias=False)
        self.embed.weight = nn.Parameter(torch.randn(400, 300) * 0.02)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embed(tokens)))


def test_a_tied_weight_first_read_without_units_gets_its_spread_in_the_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradcheck_cli import analyze
    from gradcheck_cli.analysis import engine

    torch.manual_seed(0)
    model, tokens = _Tied(head_first=True), torch.randint(0, 400, (8, 16))
    spread_of: list[int] = []
    real = HotSquares._column_squares
    monkeypatch.setattr(HotSquares, "_column_squares", lambda self, w, dim: (spread_of.append(dim), real(self, w, dim))[1])
    hot = analyze(model, tokens)
    assert spread_of == [0]  # taken once, along the head's units, in the backward
    monkeypatch.setattr(engine, "HotSquares", _Cold)
    cold = analyze(model, tokens)
    spreads = [(l.name, l.init.unit_spread) for l in hot.layers if l.init], [(l.name, l.init.unit_spread) for l in cold.layers if l.init]
    assert spreads[0][0][0] == "head" and spreads[0][0][1] == pytest.approx(spreads[1][0][1], rel=1e-5)
    assert [(p.name, p.weight_norm, p.grad_norm) for p in hot.parameters] == [(p.name, p.weight_norm, p.grad_norm) for p in cold.parameters]


def test_a_head_tied_to_an_earlier_embedding_gets_its_unit_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    """GPT-2's layout: the embedding registered first names the shared weight, the head (a Linear) holds it
    under an alias; the head's row still gets the weight's unit spread, equal to the exact centring."""
    from gradcheck_cli import analyze

    torch.manual_seed(0)
    model = _Tied(head_first=False)
    spread_of: list[int] = []
    real = HotSquares._column_squares
    monkeypatch.setattr(HotSquares, "_column_squares", lambda self, w, dim: (spread_of.append(dim), real(self, w, dim))[1])
    report = analyze(model, torch.randint(0, 400, (8, 16)))
    assert spread_of == [0]  # in cache, in the backward: not the cold centring
    head = next(layer for layer in report.layers if layer.name == "head")
    w = model.embed.weight.detach().double()
    exact = ((w - w.mean(dim=0)).norm() / w.norm()).item()
    assert head.init is not None and head.init.unit_spread == pytest.approx(exact, rel=1e-5)


def test_an_integer_weight_gets_its_true_norm_and_spread() -> None:
    """A Linear holding a frozen int8 weight (dequantised in its forward): read in the forward like any
    large weight, its squares are taken in float64 and its spread by the exact centring (in int8 both
    wrap around: the norm came out a few units instead of ~1700, the spread 1.0000 instead of 0.993).
    Its init is not judged from the stored integers (an init_mismatch warning said "std 4.63, wants 0.088")."""
    from gradcheck_cli import analyze

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 4))
    model[0].weight = nn.Parameter(torch.randint(-8, 8, (512, 256)).to(torch.int8), requires_grad=False)
    model[0].forward = lambda x, layer=model[0]: nn.functional.linear(x, layer.weight.float() * 0.01, layer.bias)
    report = analyze(model, torch.randn(8, 256))
    w = model[0].weight.detach().double()
    weight = next(p for p in report.parameters if p.name == "0.weight")
    assert weight.weight_norm == pytest.approx(w.norm().item(), rel=1e-9)
    assert weight.grad_norm is None and not report.findings  # no init verdict on the stored int8 values
    layer = next(layer for layer in report.layers if layer.name == "0")
    assert layer.init is None and "stored as int8 (quantised)" in layer.note
    # the spread is still measured right (the symmetric-units check reads it where there is init advice)
    deviation = parameter_measures(model, dict(model.named_parameters()), 1, {"0.weight": 0})[0].unit_deviation
    assert deviation == pytest.approx((w - w.mean(dim=0)).norm().item(), rel=1e-6)


@pytest.mark.parametrize("rows", [1000, 50])  # a large table (its gradient in the hook) and a small one
def test_sparse_embedding_gradients_are_measured_like_dense_ones(rows: int) -> None:
    """``nn.Embedding(sparse=True)`` hands a sparse (uncoalesced: a token seen twice is two entries)
    gradient; its norm is that of the dense gradient. The analysis failed in the backward before
    ("Could not run 'aten::linalg_vector_norm' with arguments from the 'SparseCPU' backend")."""
    from gradcheck_cli import analyze

    def report(sparse: bool):  # noqa: ANN202
        torch.manual_seed(0)
        model = nn.Sequential(nn.Embedding(rows, 128, sparse=sparse), nn.Flatten(), nn.Linear(128 * 10, 4))
        return analyze(model, torch.randint(0, rows, (16, 10), generator=torch.Generator().manual_seed(1)))

    sparse, dense = report(True), report(False)
    numbers = lambda r: [(p.name, p.weight_norm, p.grad_norm) for p in r.parameters]  # noqa: E731
    for (name, w_sparse, g_sparse), (_, w_dense, g_dense) in zip(numbers(sparse), numbers(dense)):
        assert w_sparse == w_dense, name
        assert g_sparse == pytest.approx(g_dense, rel=1e-6), name
