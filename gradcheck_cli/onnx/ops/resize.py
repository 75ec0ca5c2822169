"""Resize (and the deprecated Upsample), separable per axis.

For every resized axis we compute, in float64 NumPy exactly as the ONNX
reference does, the source taps (indices) and weights of each output position;
the data is then gathered with ``index_select`` and weighted in torch, so the
result is differentiable w.r.t. the input.  Edge padding of the reference is
index clamping; ``tf_crop_and_resize`` extrapolation is a final mask.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from ..registry import NodeContext, register
from ._util import norm_axes

Tensor = torch.Tensor
Coeffs = Callable[[float, float], np.ndarray]


def _nearest(mode: str) -> Coeffs:
    def f(ratio: float, scale: float) -> np.ndarray:
        if float(ratio).is_integer():
            return np.array([0.0, 1.0])
        if mode == "round_prefer_floor":
            return np.array([ratio <= 0.5, ratio > 0.5], dtype=np.float64)
        if mode == "round_prefer_ceil":
            return np.array([ratio < 0.5, ratio >= 0.5], dtype=np.float64)
        if mode == "floor":
            return np.array([1.0, 0.0])
        if mode == "ceil":
            return np.array([0.0, 1.0])
        raise ValueError(f"nearest_mode {mode!r}")

    return f


def _linear(antialias: bool) -> Coeffs:
    def f(ratio: float, scale: float) -> np.ndarray:
        if not antialias:
            return np.array([1 - ratio, ratio])
        s = min(scale, 1.0)
        start = int(np.floor(-1 / s) + 1)
        args = (np.arange(start, start + 2 - 2 * start) - ratio) * s
        c = np.clip(1 - np.abs(args), 0, 1)
        return c / c.sum()

    return f


def _cubic(a: float, antialias: bool) -> Coeffs:
    def f(ratio: float, scale: float) -> np.ndarray:
        if not antialias:
            r = ratio
            return np.array([
                ((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
                ((a + 2) * r - (a + 3)) * r * r + 1,
                ((a + 2) * (1 - r) - (a + 3)) * (1 - r) * (1 - r) + 1,
                ((a * ((1 - r) + 1) - 5 * a) * ((1 - r) + 1) + 8 * a) * ((1 - r) + 1) - 4 * a,
            ])
        s = min(scale, 1.0)

        def k(x: float) -> float:
            x = abs(x)
            if x <= 1:
                return (a + 2) * x**3 - (a + 3) * x**2 + 1
            if x < 2:
                return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
            return 0.0

        i0 = int(np.floor(-2 / s) + 1)
        c = np.array([k(s * (i - ratio)) for i in range(i0, 2 - i0)])
        return c / c.sum()

    return f


def _source_coords(mode: str, out_n: int, in_n: int, scale: float, roi: Optional[tuple[float, float]]):
    y = np.arange(out_n, dtype=np.float64)
    out_w = scale * in_n
    extra = None
    if mode == "align_corners":
        x = np.zeros(out_n) if out_w == 1 else y * (in_n - 1) / (out_w - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "tf_crop_and_resize":
        assert roi is not None
        if out_w == 1:
            x = np.full(out_n, (roi[1] - roi[0]) * (in_n - 1) / 2)
        else:
            x = y * (roi[1] - roi[0]) * (in_n - 1) / (out_w - 1)
        x = x + roi[0] * (in_n - 1)
        extra = (x < 0) | (x > in_n - 1)
    elif mode == "pytorch_half_pixel":
        x = np.full(out_n, -0.5) if out_w == 1 else (y + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = in_n / 2 * (1 - out_n / out_w)
        x = offset + (y + 0.5) / scale - 0.5
    elif mode == "tf_half_pixel_for_nn":
        x = (y + 0.5) / scale
    else:
        raise ValueError(f"coordinate_transformation_mode {mode!r}")
    return x, extra


def _resize_axis(x: Tensor, axis: int, out_n: int, scale: float, coeffs: Coeffs, ct_mode: str,
                 roi: Optional[tuple[float, float]], exclude_outside: bool, extrapolation: float) -> Tensor:
    """Port of the reference's vectorised 1-D interpolation along ``axis``."""
    in_n = x.shape[axis]
    if out_n == 0:
        shape = list(x.shape)
        shape[axis] = 0
        return x.new_empty(shape)
    xo, extra = _source_coords(ct_mode, out_n, in_n, scale, roi)
    xi = np.floor(xo).astype(np.int64)
    ratios = np.where(xo == xi, 1.0, xo - xi)
    w = np.stack([coeffs(float(r), scale) for r in ratios]).astype(np.float64)
    n = w.shape[1]
    pad = int(np.ceil(n / 2))
    xp = xo + pad
    pp = np.floor(xp).astype(np.int64)
    frac = xp - pp
    if n % 2 == 0:
        off = np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        base = -((n - 1) // 2)
        off = np.where(frac <= 0.5, base, base + 1)
    idx = (pp + off)[:, None] + np.arange(n)[None, :] - pad
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= in_n), 0.0, w)
        s = w.sum(-1, keepdims=True)
        w = w / np.where(s == 0, 1.0, s)
    idx = np.clip(idx, 0, in_n - 1)
    cdt = x.dtype if x.dtype.is_floating_point else torch.float64
    g = x.index_select(axis, torch.from_numpy(idx.reshape(-1)).to(x.device)).to(cdt)
    g = g.reshape(tuple(x.shape[:axis]) + (out_n, n) + tuple(x.shape[axis + 1:]))
    wt = torch.from_numpy(w).to(x.device, cdt).reshape((1,) * axis + (out_n, n) + (1,) * (x.dim() - axis - 1))
    y = (g * wt).sum(axis + 1)
    if extra is not None and extra.any():
        m = torch.from_numpy(extra).to(x.device).reshape((1,) * axis + (out_n,) + (1,) * (x.dim() - axis - 1))
        y = torch.where(m, torch.tensor(extrapolation, dtype=cdt), y)
    if not x.dtype.is_floating_point:
        info = torch.iinfo(x.dtype)
        y = y.round().clamp(info.min, info.max)
    return y.to(x.dtype)


def _list(t: Optional[Tensor]) -> Optional[list[float]]:
    return None if t is None or t.numel() == 0 else [float(v) for v in t.reshape(-1).tolist()]


def resize_impl(ctx: NodeContext, x: Tensor, roi: Optional[list[float]], scales: Optional[list[float]],
                sizes: Optional[list[float]], ct_mode: str, nearest_mode: str) -> Tensor:
    r = x.dim()
    mode = ctx.attr("mode", "nearest")
    antialias = bool(ctx.attr("antialias", 0))
    if mode == "nearest":
        coeffs = _nearest(nearest_mode)
    elif mode == "linear":
        coeffs = _linear(antialias)
    elif mode == "cubic":
        coeffs = _cubic(ctx.attr("cubic_coeff_a", -0.75), antialias)
    else:
        raise ctx.unsupported(f"Resize mode {mode!r}")
    axes = norm_axes(ctx.attr("axes"), r) if ctx.attr("axes") else list(range(r))
    full_roi = None
    if roi is not None:
        full_roi = [(0.0, 1.0)] * r
        k = len(axes)
        for i, a in enumerate(axes):
            full_roi[a] = (roi[i], roi[k + i])
    if sizes is not None:
        sizes_i = [int(s) for s in sizes]
        sc = {a: sizes_i[i] / x.shape[a] for i, a in enumerate(axes)}
        out = {a: sizes_i[i] for i, a in enumerate(axes)}
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            s = min(sc.values()) if policy == "not_larger" else max(sc.values())
            sc = {a: s for a in axes}
            out = {a: int(s * x.shape[a] + 0.5) for a in axes}
    elif scales is not None:
        sc = {a: scales[i] for i, a in enumerate(axes)}
        out = {a: int(np.float64(np.float32(sc[a])) * x.shape[a]) for a in axes}
    else:
        raise ValueError("Resize needs scales or sizes")
    y = x
    for a in axes:
        aroi = full_roi[a] if full_roi is not None else None
        if math.isclose(sc[a], 1.0) and out[a] == y.shape[a] and (
                aroi is None or (math.isclose(aroi[0], 0.0) and math.isclose(aroi[1], 1.0))):
            continue
        y = _resize_axis(y, a, out[a], float(np.float32(sc[a])) if sizes is None else sc[a], coeffs, ct_mode,
                         aroi, bool(ctx.attr("exclude_outside", 0)), ctx.attr("extrapolation_value", 0.0))
    return y


@register("Resize", since=10)
def resize(ctx: NodeContext, inp: list) -> Tensor:
    x = inp[0]
    if ctx.opset < 11:  # Resize-10: (X, scales), asymmetric coordinates, floor rounding like Upsample
        return resize_impl(ctx, x, None, _list(inp[1]), None, "asymmetric", "floor")
    roi = _list(inp[1]) if len(inp) > 1 else None
    scales = _list(inp[2]) if len(inp) > 2 else None
    sizes = _list(inp[3]) if len(inp) > 3 else None
    ct = ctx.attr("coordinate_transformation_mode", "half_pixel")
    if ct != "tf_crop_and_resize":
        roi = None
    return resize_impl(ctx, x, roi, scales, sizes, ct, ctx.attr("nearest_mode", "round_prefer_floor"))


@register("Upsample", since=7, until=9)
def upsample(ctx: NodeContext, inp: list) -> Tensor:
    scales = ctx.attr("scales") if ctx.opset < 9 else _list(inp[1])
    if not scales:
        raise ValueError("Upsample needs scales")
    return resize_impl(ctx, inp[0], None, list(scales), None, "asymmetric", "floor")
