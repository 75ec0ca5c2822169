"""The hot path's fast kernels against slow float64 references, each path forced in turn.

``forward_row`` picks a kernel by layout (fused per-feature moments for feature-last CPU tensors,
channel sums and raw - between, or the exact reduce-centre-dot, otherwise), reuses a pooled scratch buffer for small tensors, and the gradient
hook sits on the autograd node. Each choice is checked here against the obvious computation, so a
faster kernel can never silently change a statistic.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gradcheck_cli.measure.params import sums_of_squares
from gradcheck_cli.measure import reductions
from gradcheck_cli.measure.reductions import ScratchPool, forward_row, gradient_moments, squares_of
from gradcheck_cli.measure.collector import StatsCollector
from gradcheck_cli.measure.merging import zero_fraction as _zero_fraction


def _reference(x: torch.Tensor, unit_dim: int | None) -> dict[str, float | torch.Tensor]:
    d = x.double()
    if unit_dim is None:
        means = d.reshape(1)
        centred = (d - d.mean()).square().sum()
    else:
        dims = tuple(i for i in range(d.dim()) if i != unit_dim)
        means = d.mean(dim=dims) if dims else d.reshape(-1)
        centred = (d - d.mean(dim=dims, keepdim=True)).square().sum() if dims else torch.zeros((), dtype=torch.float64)
    return {"means": means, "centred": centred.item(), "min": d.min().item(), "max": d.max().item(),
            "nonzero": (d != 0).sum().item()}


def _centred(row: list[torch.Tensor], x: torch.Tensor) -> float:
    """The row's second moment as a centred sum of squares, whichever form it holds."""
    second = row[1].double()
    if second.dim() == 0:
        return second.item()
    return second.sum().item() * (x.numel() // second.numel())


@contextmanager
def _kernels(accelerator: bool) -> Iterator[None]:
    """Run the kernels an accelerator gets (one-kernel reductions, nothing read back) on CPU
    tensors, or the host's own. The arithmetic is what is tested; the speed is the device's."""
    if not accelerator:
        yield
        return
    with mock.patch.object(reductions, "on_host", lambda t: False):
        yield


KERNELS = pytest.mark.parametrize("accelerator", [False, True], ids=["host", "accelerator"])

LAYOUTS = [
    ((64, 512), 1),         # linear: feature-last, fused moments
    ((2, 16, 24), 2),       # sequence model: feature-last 3-d
    ((4, 6, 5, 5), 1),      # conv: channel-first, reduce-centre-dot
    ((3, 7, 9), 1),         # conv1d: channel-first
    ((5,), 0),              # one value per unit
    ((), None),             # a scalar
]


@pytest.mark.parametrize("shape,unit_dim", LAYOUTS)
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("pooled", [True, False])
@KERNELS
def test_forward_row_matches_float64_reference(shape, unit_dim, contiguous, pooled, accelerator):
    torch.manual_seed(0)
    x = torch.relu(torch.randn(shape)) + (3.0 if shape else 0.0)  # an offset mean: the centring matters
    if not contiguous and x.dim() >= 2:
        x = x.transpose(0, -1).contiguous().transpose(0, -1)  # same values, strided: forces the general path
    with _kernels(accelerator):
        scratch = ScratchPool().get(x) if pooled else None
        row = forward_row(x, None, unit_dim, scratch)
    ref = _reference(x, unit_dim)
    assert torch.allclose(row[0].double(), ref["means"], rtol=1e-5, atol=1e-6)
    assert _centred(row, x) == pytest.approx(ref["centred"], rel=1e-4, abs=1e-6)
    assert row[2].item() == pytest.approx(ref["min"]) and row[3].item() == pytest.approx(ref["max"])
    assert row[4].item() == ref["nonzero"]


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40), units=st.integers(1, 40),
    offset=st.floats(-1e3, 1e3), scale=st.floats(1e-4, 1e2), zeros=st.floats(0, 1), accelerator=st.booleans(),
)
def test_fused_moments_keep_tiny_spread_around_a_large_mean(rows, units, offset, scale, zeros, accelerator):
    """The failure centring exists for: a collapsing signal (std 1e-4 of the mean) must survive."""
    g = torch.Generator().manual_seed(rows * 1000 + units)
    x = (offset + scale * torch.randn(rows, units, generator=g)).float()
    x[torch.rand(rows, units, generator=g) < zeros] = 0.0
    with _kernels(accelerator):
        row = forward_row(x, None, 1)
    ref = _reference(x, 1)
    assert row[1].dim() == 1  # the fused path was taken
    assert _centred(row, x) == pytest.approx(ref["centred"], rel=2e-3, abs=1e-6 * max(1.0, offset * offset) * x.numel())
    assert row[4].item() == ref["nonzero"]


@settings(max_examples=60, deadline=None)
@given(
    shape=st.sampled_from([(4, 6, 5, 5), (2, 3, 64), (8, 16, 9, 9)]),
    offset=st.floats(-1e3, 1e3), scale=st.floats(1e-4, 1e2), per_channel=st.booleans(), accelerator=st.booleans(),
)
def test_channel_first_moments_are_exact_whichever_path_runs(shape, offset, scale, per_channel, accelerator):
    """Channel-first CPU tensors take raw - between (two read-only passes) when that keeps its
    precision, else the exact centred pass: either way the centred sum of squares is right."""
    g = torch.Generator().manual_seed(len(shape) * 7 + int(abs(offset)) % 1000)
    x = scale * torch.randn(shape, generator=g)
    if per_channel:  # unit means that differ a lot: the between-unit part is most of the raw moment
        x += offset * torch.linspace(-1, 1, shape[1]).view(1, -1, *([1] * (len(shape) - 2)))
    else:
        x += offset
    with _kernels(accelerator):
        row = forward_row(x, None, 1)
    ref = _reference(x, 1)
    assert torch.allclose(row[0].double(), ref["means"], rtol=1e-5, atol=1e-6 * max(1.0, abs(offset)))
    # float32 data near a large mean is itself quantised at ~1e-7 of it: the floor is relative to the raw moment
    raw = x.double().square().sum().item()
    assert _centred(row, x) == pytest.approx(ref["centred"], rel=1e-3, abs=1e-6 * raw)


def test_channel_first_shortcut_is_taken_only_when_well_conditioned():
    torch.manual_seed(0)
    centred_signal = torch.randn(4, 8, 6, 6)       # mean ~0: raw ~ centred, the shortcut holds
    assert forward_row(centred_signal, None, 1)[1].dtype == torch.float64
    collapsing = 1e3 + 1e-3 * torch.randn(4, 8, 6, 6)  # raw/centred ~1e12: the exact pass runs
    row = forward_row(collapsing, None, 1)
    assert row[1].dtype == torch.float32
    # raw - between would be noise here (float32 keeps ~7 digits of 1e6); the exact pass is within the
    # float32 quantisation of the data around its mean (ulp(1e3) = 6e-5 against a std of 1e-3)
    assert _centred(row, collapsing) == pytest.approx(_reference(collapsing, 1)["centred"], rel=1e-2)


def test_zero_count_is_skipped_on_request_and_needs_no_buffer():
    x = torch.randn(16, 8, 4, 4)
    row = forward_row(x, None, 1, count_zeros=False)
    assert row[4] is None and row[5] is None
    assert forward_row(x, None, 1)[4].item() == (x != 0).sum().item()


def test_rectifiers_always_have_their_zeros_counted():
    """Dead-unit verdicts weigh the zero fraction against chance: it must never be skipped for them."""
    from gradcheck_cli.layers import DENSE_KINDS, RECTIFIER_KINDS

    assert RECTIFIER_KINDS.isdisjoint(DENSE_KINDS)


@pytest.mark.parametrize("counts,lo,hi,expected", [
    ([30.0, 10.0], -1.0, 1.0, 1 - 40 / 64),   # counted on every pass
    ([30.0, None], 0.5, 2.0, 0.0),            # not counted, but 0 lies outside the range
    ([None], -2.0, -0.1, 0.0),
    ([None], 0.0, 0.0, 1.0),                  # all zeros
    ([None], -1.0, 1.0, None),                # unknown
])
def test_zero_fraction_is_counted_implied_or_unknown(counts, lo, hi, expected):
    assert _zero_fraction(counts, 64, lo, hi) == expected


@KERNELS
def test_nonfinite_values_poison_their_unit_only(accelerator):
    x = torch.randn(8, 4)
    x[3, 1], x[5, 2] = float("nan"), float("inf")
    with _kernels(accelerator):
        row = forward_row(x, None, 1)
    finite = torch.isfinite(row[0])
    assert finite.tolist() == [True, False, False, True]
    assert row[4].item() == 32 - (x == 0).sum().item()  # NaN counts as nonzero


@KERNELS
def test_saturation_count_uses_the_pooled_buffer_correctly(accelerator):
    x = torch.sigmoid(torch.randn(64, 32) * 8)
    from gradcheck_cli.layers import saturation_for

    pool = ScratchPool()
    for _ in range(2):  # the second call reuses the same view: stale contents must not leak in
        with _kernels(accelerator):
            row = forward_row(x, saturation_for("sigmoid", {}), 1, pool.get(x))
        assert row[5].item() == ((x < 0.01) | (x > 0.99)).sum().item()
        assert row[4].item() == (x != 0).sum().item()


def test_scratch_pool_bounds_memory_and_reuses_views():
    pool = ScratchPool(limit=4096)
    small = torch.zeros(16, 8)           # 512 bytes
    a, b = pool.get(small), pool.get(small)
    assert a is b and a.shape == small.shape and a.is_contiguous()
    other = pool.get(torch.zeros(4, 4, dtype=torch.float64))
    assert other.dtype == torch.float64 and other.data_ptr() == a.data_ptr()  # one buffer underneath
    assert pool.get(torch.zeros(2048)) is None  # 8 KiB > limit: the caller allocates


@pytest.mark.parametrize("tensor", [
    torch.randn(512, 300), torch.randn(7), torch.randn(300, 300).t(),
    torch.full((100,), 300.0, dtype=torch.float16), torch.randn(70_000, dtype=torch.float64),
], ids=["big", "small", "strided", "half", "double"])
def test_sums_of_squares_match_reference(tensor):
    expected = tensor.double().square().sum().item()
    assert sums_of_squares([tensor])[0] == pytest.approx(expected, rel=1e-5)
    assert squares_of(tensor).item() == pytest.approx(expected, rel=1e-3)  # half: float32 accumulation


def test_sums_of_squares_keep_the_order_of_a_mixed_list():
    """Large, small and half tensors go through different kernels; results come back in input order."""
    torch.manual_seed(0)
    tensors = [torch.randn(7), torch.randn(300, 300), torch.full((10,), 300.0, dtype=torch.float16),
               torch.randn(3, 3), torch.randn(70_000), torch.zeros(4)]
    expected = [t.double().square().sum().item() for t in tensors]
    assert sums_of_squares(tensors) == pytest.approx(expected, rel=1e-5)
    assert sums_of_squares([]) == []


class _Twins(nn.Module):
    """A layer whose output is one slot of a multi-output node, consumed twice, then changed in place."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 8)

    def forward(self, x):
        a, b = torch.var_mean(self.lin(x), dim=0)  # b is output 1 of VarMeanBackward
        return a, b


def _hooked_grads(model: nn.Module, x: torch.Tensor, use_collector: bool) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    collector = StatsCollector()
    a, b = model(x)
    if use_collector:
        collector._hook_gradient(b, 0, b.grad_fn, b.numel())
    else:
        b.register_hook(lambda g: seen.append(g.square().sum()))
    out = (b * 3).sum() + (b * torch.arange(8.0)).sum() + a.sum()  # b consumed twice
    b.mul_(2)  # in place after the hook: both must report the gradient of the value they saw
    out.backward()
    if use_collector:
        return [collector._grads[0][2].second]
    return seen


def test_node_prehook_sees_what_a_tensor_hook_sees():
    torch.manual_seed(0)
    model, x = _Twins(), torch.randn(5, 6)
    via_node = _hooked_grads(model, x, use_collector=True)
    via_tensor = _hooked_grads(model, x, use_collector=False)
    assert len(via_node) == len(via_tensor) == 1
    assert via_node[0].item() == pytest.approx(via_tensor[0].item(), rel=1e-6)


def test_leaf_output_falls_back_to_a_tensor_hook():
    leaf = torch.randn(3, 4, requires_grad=True)
    collector = StatsCollector()
    collector._hook_gradient(leaf, 0, leaf.grad_fn, leaf.numel())
    (leaf * 2).sum().backward()
    index, numel, moments = collector._grads[0]
    assert (index, numel) == (0, 12)
    assert moments.second.item() == pytest.approx(4 * 12) and math.isfinite(moments.sentinel.item())


def _sum_of_squares(moments: reductions.GradientMoments, numel: int) -> float:
    return moments.sum_of_squares(moments.second.item(), moments.sentinel.item(), numel)


@pytest.mark.parametrize("poison,finite_sentinel", [
    (None, True),                  # the usual case: on CPU the squares are their own sentinel, no second pass
    (float("nan"), False),
    (float("inf"), False),
    (1e20, True),                  # finite, but its square overflows float32: not a NaN/Inf gradient
], ids=["finite", "nan", "inf", "overflow"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@KERNELS
def test_gradient_sentinel_tells_nonfinite_from_overflow(poison, finite_sentinel, dtype, accelerator):
    grad = torch.randn(64, 32)
    if poison is not None:
        grad[3, 5] = poison
    grad = grad.to(dtype)
    with _kernels(accelerator):
        moments = gradient_moments(grad)
    assert moments.centred is (accelerator and dtype == torch.float32)  # half types keep float32 squares
    assert math.isfinite(moments.sentinel.item()) is finite_sentinel
    expected = grad.double().square().sum().item()
    if expected > torch.finfo(torch.float32).max and not moments.centred:
        expected = math.inf  # float32 squares overflow: an infinite RMS (the variance, / numel, may still fit)
    if moments.centred and not finite_sentinel:
        expected = math.nan  # Welford's mean and variance cannot tell an Inf from a NaN
    assert _sum_of_squares(moments, grad.numel()) == pytest.approx(expected, rel=1e-5, nan_ok=True)


def test_half_gradient_sentinel_does_not_overflow_on_an_accelerator():
    """A finite float16 gradient whose sum exceeds 65504 is still finite: the sum is taken in float32."""
    grad = torch.full((64, 64), 100.0, dtype=torch.float16)
    with _kernels(accelerator=True):
        moments = gradient_moments(grad)
    assert math.isfinite(moments.sentinel.item())
    assert _sum_of_squares(moments, grad.numel()) == pytest.approx(100.0**2 * grad.numel(), rel=1e-3)


def test_accelerator_arithmetic_agrees_with_the_cpu_paths() -> None:
    """The CUDA code paths, run here without a GPU: a CNN and an MLP report the same statistics
    (within float32 rounding) whichever set of kernels computed them."""
    torch.manual_seed(3)
    cnn = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Tanh(),
                        nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(10, 3, 8, 8)
    from gradcheck_cli import analyze

    host = analyze(cnn, x, batch_size=5, batches=2)
    with _kernels(accelerator=True):
        accel = analyze(cnn, x, batch_size=5, batches=2)
    for a, b in zip(host.layers, accel.layers):
        assert a.name == b.name
        if a.activation is None:
            continue
        for field in ("mean", "std", "signal_std", "min", "max", "zero_fraction", "dead_ratio", "saturation"):
            expected = getattr(a.activation, field)  # None (not measured) must match exactly
            assert getattr(b.activation, field) == (None if expected is None else pytest.approx(expected, rel=1e-4, abs=1e-6)), field
        assert b.grad.output_rms == pytest.approx(a.grad.output_rms, rel=1e-5)
        assert b.grad.nonfinite == a.grad.nonfinite
    assert [f.kind for f in host.findings] == [f.kind for f in accel.findings]


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int32, torch.bool, torch.complex64])
@pytest.mark.parametrize("size", [4096, 1 << 17])  # small (squared together) and large (one dot each)
def test_squares_of_integer_and_complex_tensors(dtype: torch.dtype, size: int) -> None:
    """A quantised (integer) weight's squares would wrap around in its own dtype (an int8 weight's norm
    came out 0); a complex tensor's are |z|^2, not z^2. Both against float64/complex128 references, alone
    and through sums_of_squares beside float tensors."""
    g = torch.Generator().manual_seed(0)
    if dtype.is_complex:
        t = torch.randn(size, generator=g, dtype=dtype)
    elif dtype == torch.bool:
        t = torch.rand(size, generator=g) > 0.5
    else:
        info = torch.iinfo(dtype)
        t = torch.randint(max(info.min, -1000), min(info.max, 1000) + 1, (size,), generator=g).to(dtype)
    expected = float(t.to(torch.complex128).abs().square().sum()) if dtype.is_complex else float(t.double().square().sum())
    rel = 1e-5 if dtype.is_complex else 1e-9  # complex64 is summed in float32; integers exactly in float64
    assert float(squares_of(t)) == pytest.approx(expected, rel=rel)
    together = sums_of_squares([torch.ones(300), t, torch.full((70000,), 2.0)])
    assert together == pytest.approx([300.0, expected, 280000.0], rel=max(rel, 1e-7))  # reported as float32
