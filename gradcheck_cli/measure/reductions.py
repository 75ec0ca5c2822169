"""Device-side reductions of one tensor: the kernels the hot path launches, chosen per layout and device.

Every function here returns small device tensors and never retains its input. Each fast path is
pinned against a float64 reference in ``tests/measure/test_reductions.py``; the measurements that
chose them are in the docstrings.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch

from gradcheck_cli.layers import Saturation

if TYPE_CHECKING:
    from collections.abc import Callable


def on_host(t: torch.Tensor) -> bool:
    """Whether ``t`` lives in host memory: the one switch between the CPU kernels (fused moments,
    host-side checks of scalar results, pooled scratch) and the accelerator ones (plain reductions,
    nothing read back). Tests flip it to run the accelerator arithmetic on CPU tensors. ``is_cpu``,
    not ``device.type``: the latter builds a device object (0.5 us against 0.09, three times a layer)."""
    return t.is_cpu


def forward_row(x: torch.Tensor, saturation: Saturation | None, unit_dim: int | None,
                scratch: torch.Tensor | None = None, count_zeros: bool = True) -> list[torch.Tensor | None]:
    """The device-side reductions of one tensor: [unit means, second moment, min, max, nonzero, saturated].

    The per-unit mean gives the mean, the spread of the unit means, whether a rectifier unit ever
    fired (its outputs are >= 0) and which units hold NaN/Inf (they poison it). The second moment
    is taken about each unit's own mean, because E[x^2] - mean^2 in float32 loses everything below
    ~1e-3 of the RMS, exactly where a collapsing network's signal lives; the total second moment
    is then exact too (the unit means' part is added back on the host). It comes in one of two
    forms, chosen for speed on the device at hand (see :func:`_unit_moments`): per-unit variances
    (a vector), or the centred sum of squares (a scalar). Every reduction is one of torch's fast
    single passes in the tensor's float32 (float64 accumulation costs 4-20x on CPU); squares
    beyond float32's range (|x| > 1.8e19) overflow to an infinite std, reported as such.

    The nonzero count (``count_zeros``) and the saturated count are None when not asked for: each
    costs a write and a read of the whole tensor, and exact zeros only mean something after an
    activation (sparsity, dead units), not after an affine map or a normalisation.

    The elementwise temporaries (centred values, the nonzero test, the saturation test) share one
    buffer, ``scratch`` if given (x's shape, contiguous; see :class:`ScratchPool`), else one
    allocated here on first need and dropped on return: on CPU an activation-sized allocation costs
    about as much as the arithmetic (fresh pages fault), so at most one is made.
    """
    buffer = scratch

    def temporary() -> torch.Tensor:
        nonlocal buffer
        if buffer is None:
            buffer = torch.empty_like(x, memory_format=torch.contiguous_format)
        return buffer

    means, second = _unit_moments(x, unit_dim, temporary)
    lo, hi = torch.aminmax(x)
    nonzero = count_nonzero(x, temporary) if count_zeros else None
    saturated = None
    if saturation is not None:  # |x - centre| >= cutoff as 1.0/0.0 in place, summed in one fast pass
        saturated = torch.sub(x, saturation.centre, out=temporary()).abs_().ge_(saturation.cutoff).sum()
    return [means, second, lo, hi, nonzero, saturated]


RAW_MOMENT_AMPLIFICATION = 16.0
"""How far the uncentred shortcut in :func:`_unit_moments` may amplify a float32 dot's rounding
error: the centred sum of squares is raw - between, so its relative error is the dot's (measured
2e-5 over 16M elements) times raw / centred. Accepted up to 16x, i.e. about 3e-4; beyond that
(a mean more than ~4 standard deviations from zero: sigmoid outputs, a collapsing signal) the
exact centred pass runs instead."""


def _unit_moments(x: torch.Tensor, unit_dim: int | None,
                  temporary: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-unit means (a vector) and the second moment about them: per-unit population variances
    (a vector) or the centred sum of squares (a 0-d tensor).

    On an accelerator, ``var_mean`` gives both in one Welford reduction kernel, whatever the
    layout: there the cost of a small layer is the launches (plain sums, a centring write and a
    dot took four kernels and an allocation), and Welford's update is as exact as centring first.
    On CPU, ``var_mean`` is much slower than the following, so the CPU kernels are chosen by layout
    instead (README, Performance: "kernel choices", has the measurements).
    Units in the last dimension of a contiguous CPU tensor (linear, attention, embedding outputs:
    most layers) go through ``batch_norm_update_stats``, one fused per-feature mean/variance kernel
    that writes no temporary, faster than sum, subtract, square-sum.
    For channel-first layouts (N, C, H, W) the same kernel is slower on CPU than plain
    reductions. There, on CPU, the unit sums and one BLAS dot give the centred sum of squares as
    raw - between in two read-only passes; the two scalars are in host memory already, so checking
    that the subtraction kept its precision (:data:`RAW_MOMENT_AMPLIFICATION`) costs no
    synchronisation, and when it did not, the exact pass (centre into ``temporary()``, dot) runs.
    """
    if unit_dim is not None and unit_dim == x.dim() - 1 >= 1 and x.is_contiguous() and on_host(x):
        # the usual case (see below), decided before building anything: this runs once per layer per call
        return torch.batch_norm_update_stats(x if unit_dim == 1 else x.view(-1, x.shape[-1]), None, None, 0.0)
    dims = tuple(d for d in range(x.dim()) if unit_dim is None or d != unit_dim)
    if not dims:  # a 0-d output, or one value per unit: nothing to centre within a unit
        return x.reshape(-1), x.new_zeros(())
    if not on_host(x):
        variances, means = torch.var_mean(x, dim=dims, correction=0)
        return means.reshape(-1), variances.reshape(-1)
    if unit_dim is not None and unit_dim == x.dim() - 1 and x.is_contiguous():
        return torch.batch_norm_update_stats(x.view(-1, x.shape[-1]), None, None, 0.0)
    per_unit = x.numel() // x.shape[unit_dim] if unit_dim is not None else x.numel()
    sums = x.sum(dim=dims, keepdim=True)
    if x.is_contiguous():
        raw = sum_of_squares(x.view(-1))
        centred = raw.double() - sums.double().square().sum() / per_unit
        value = centred.item()
        if math.isfinite(value) and value * RAW_MOMENT_AMPLIFICATION >= raw.item():
            return sums.reshape(-1).div_(per_unit), centred
    means = sums.div_(per_unit)
    return means.reshape(-1), sum_of_squares(torch.sub(x, means, out=temporary()).view(-1))


HALF = (torch.float16, torch.bfloat16)
"""The half-precision dtypes, whose squares and sums are taken in float32."""


def squares_of(t: torch.Tensor) -> torch.Tensor:
    """Sum of squares of any tensor, as a device scalar (float32 at least: half squares overflow at 256).
    Integer tensors (quantised weights) are squared in float64 (in their own dtype the squares wrap
    around: an int8 weight's norm came out 0 or a few units); complex ones give sum |z|^2; sparse ones
    (gradients of ``sparse=True`` embeddings) their coalesced values' squares."""
    if t.layout != torch.strided:  # a sparse gradient (nn.Embedding(sparse=True)): duplicates summed first
        return squares_of((t.coalesce() if t.is_sparse else t).values())
    if not t.is_floating_point():
        if t.is_complex():
            return torch.linalg.vector_norm(t).square()
        return sum_of_squares(t.reshape(-1).to(torch.float64))
    if t.dtype in HALF or not t.is_contiguous():
        return torch.linalg.vector_norm(t, dtype=torch.promote_types(t.dtype, torch.float32)).square()
    return sum_of_squares(t.view(-1))


def sum_of_squares(flat: torch.Tensor) -> torch.Tensor:
    """Sum of squares of a contiguous 1-d tensor as a device scalar. A BLAS dot beats
    ``vector_norm(...).square()`` on CPU (one fused multiply-add pass); BLAS counts in 32-bit
    integers, so larger tensors take the norm."""
    if flat.numel() < 2**31:
        return torch.dot(flat, flat)
    return torch.linalg.vector_norm(flat).square()


class GradientMoments(NamedTuple):
    """What one gradient pass leaves: ``second`` and ``sentinel`` are device scalars, read together
    at the end of the run. Raw form: the sum of squares, and a value that is finite exactly when
    every element was. Centred form (``centred``): the population variance and the mean, whose
    sum of squares is numel x (variance + mean^2) and whose mean is the sentinel."""

    second: torch.Tensor
    sentinel: torch.Tensor
    centred: bool

    def sum_of_squares(self, second: float, sentinel: float, numel: int) -> float:
        """The sum of squares from the host values of ``second`` and ``sentinel``. In the centred
        form an Inf element makes the mean and variance NaN (Welford's inf - inf), so the squares of
        a non-finite gradient are NaN there, where the raw form says inf unless a NaN was present;
        either way the pass is counted as non-finite."""
        if not self.centred:
            return second
        return numel * (second + sentinel * sentinel) if math.isfinite(sentinel) else math.nan


def gradient_moments(grad: torch.Tensor) -> GradientMoments:
    """The sum of squares of a gradient, and whether it was finite, in as few passes as the device allows.

    NaN/Inf in the gradient poison its sum; the squares alone cannot tell an Inf from the float32
    overflow of a finite square (|g| > 1.8e19). On CPU the squares are in host memory already: when
    they are finite, every element was, and the squares are their own sentinel, so the second pass
    is skipped (the usual case). On an accelerator, reading them would synchronise, so one
    ``var_mean`` kernel gives both in the centred form: a NaN/Inf element poisons the mean, and the
    squares are rebuilt in float64 on the host, so they overflow only where the variance does
    (numel times later than the raw squares). Half-precision gradients take a float32 norm and a
    float32 sum instead: their variance would overflow float16 at an RMS of 256, their sum at 65504.
    """
    if on_host(grad):
        squares = squares_of(grad)
        sentinel = squares if math.isfinite(squares.item()) else grad.sum()
        return GradientMoments(squares, sentinel, centred=False)
    if grad.dtype in HALF:
        return GradientMoments(squares_of(grad), grad.sum(dtype=torch.float32), centred=False)
    variance, mean = torch.var_mean(grad, correction=0)
    return GradientMoments(variance, mean, centred=True)


def count_nonzero(x: torch.Tensor, temporary: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Nonzero elements (NaN counts as nonzero), as a device scalar. On CPU ``torch.count_nonzero``
    is slower than the layer itself on large activations; ``x != 0`` written as 1.0/0.0 into the
    float ``temporary()`` (x's shape, overwritten) and summed is an order of magnitude faster there,
    and exact below 2**24 elements per partial sum (a relative error of 1e-7 beyond, for a fraction). On an accelerator ``count_nonzero`` is that same compare-then-sum, two kernels
    and a temporary, where the L0 norm is one reduction kernel (counting in float32 alike)."""
    if not on_host(x):
        return torch.linalg.vector_norm(x, ord=0)
    return torch.ne(x, 0, out=temporary()).sum()


class ScratchPool:
    """One small reusable buffer for the elementwise temporaries of small CPU tensors.

    Allocating and freeing a 128 KiB temporary per layer costs more than the reductions over it on
    CPU: glibc hands such blocks back to the kernel on free, so every fresh one page-faults (a large
    share of a small layer's statistics time). Tensors
    up to ``limit`` bytes get a view of one buffer instead, cached per shape, so the hot path makes
    no allocation and no view; larger tensors allocate their own (the pass over them dwarfs the
    allocation) and drop it at once, so the peak memory grows by ``limit`` at most -- not by the
    largest activation, which a buffer for every size would add. CUDA's
    caching allocator makes allocation cheap, so CUDA tensors always allocate.
    """

    def __init__(self, limit: int = 1 << 20) -> None:
        self.limit = limit
        self._buffer: torch.Tensor | None = None
        self._views: dict[tuple[tuple[int, ...], torch.dtype], torch.Tensor] = {}

    def get(self, x: torch.Tensor) -> torch.Tensor | None:
        """A contiguous tensor of x's shape and dtype to overwrite, or None (allocate your own)."""
        if not on_host(x):
            return None
        key = (x.shape, x.dtype)
        view = self._views.get(key)
        if view is not None:
            return view
        nbytes = x.numel() * x.element_size()
        if nbytes > self.limit:
            return None
        if self._buffer is None:
            self._buffer = torch.empty(self.limit, dtype=torch.uint8)
        view = self._views[key] = self._buffer[:nbytes].view(x.dtype).view(x.shape)
        return view
