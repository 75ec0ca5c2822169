"""Parameter norms: every weight's and gradient's L2 norm with fused kernels and one transfer."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from gradcheck_cli.layers import WEIGHT_KINDS, LayerInfo
from gradcheck_cli.measure.measurements import ParamMeasure
from gradcheck_cli.measure.distributed import local_tensor
from gradcheck_cli.measure.reductions import HALF, squares_of
from gradcheck_cli.measure.tree import module_tree

if TYPE_CHECKING:
    from gradcheck_cli.measure.hot import HotSquares


def sums_of_squares(tensors: list[torch.Tensor], known: dict[int, torch.Tensor] | None = None) -> list[float]:
    """Sum of squares of each tensor, with one device-to-host transfer. ``known``: index -> the float32
    device scalar ``squares_of(tensors[index]).float()`` already taken (by :class:`~gradcheck_cli.measure.hot.HotSquares`), for
    large tensors only: the same kernel on the same values, so the same bits.

    Large tensors take a BLAS dot each (``reductions.squares_of``): on CPU it streams at memory speed,
    where ``_foreach_norm`` (a loop of norm kernels there) is slower. The many small ones (biases,
    norm scales) are squared together (:func:`_small_squares`). Each group is gathered as one
    vector, not scalar by scalar.
    """
    big: list[int] = []
    small: dict[tuple[torch.device, bool], list[int]] = {}
    for i, t in enumerate(tensors):  # one pass: a tensor's attributes cost ~0.1 us each, 240 tensors on tiny60
        if t.numel() >= LARGE or t.layout != torch.strided:  # sparse tensors cannot be flattened together
            big.append(i)
        else:
            small.setdefault((t.device, t.dtype in HALF), []).append(i)
    groups: list[tuple[list[int], torch.Tensor]] = []
    if big:
        known = known or {}
        groups.append((big, torch.stack([known[i] if i in known else squares_of(tensors[i]).float() for i in big])))
    for group in small.values():
        groups.append((group, _small_squares([tensors[i] for i in group])))
    if not groups:
        return []
    values = torch.cat([squares for _, squares in groups]).cpu().tolist()
    result = [0.0] * len(tensors)
    for i, value in zip((i for indices, _ in groups for i in indices), values):
        result[i] = value
    return result


def _small_squares(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Each small tensor's sum of squares as one float32 vector: the tensors flattened into one buffer
    (one C++ call), squared and summed per tensor by ``segment_reduce`` in float64 (half-precision
    squares overflow at 65504; float32 sums of many would lose digits). On CPU ``_foreach_norm`` is a loop of norm kernels: for tiny60's
    240 tensors it took 0.46 ms against 0.16 ms for this."""
    flat = torch._C._nn.flatten_dense_tensors(tensors)
    flat = (flat.abs() if flat.is_complex() else flat).double()  # accumulated in float64, as CPU norms are
    lengths = torch.tensor([t.numel() for t in tensors], device=flat.device)
    return torch.segment_reduce(flat.square(), "sum", lengths=lengths).float()


def unit_dims(layers: list[LayerInfo]) -> dict[str, int]:
    """Weight name -> the dimension its units (output features/channels) lie along, for weight layers:
    0 for Linear and conv, 1 for transposed storage (HF's Conv1D, ONNX MatMul/Gemm, conv_transpose)."""
    dims = {}
    for info in layers:
        name = info.params.get("weight")
        dim = unit_dim(info.kind, info.type_name, info.attrs)
        if name and dim is not None:
            dims[name] = dim
    return dims


def unit_dim(kind: str, type_name: str, attrs: dict[str, float]) -> int | None:
    """The dimension a layer's weight has its units along (see :func:`unit_dims`); None: not a weight
    layer, or fused experts (an expert's rows are not the model's units)."""
    if kind not in WEIGHT_KINDS or attrs.get("expert_slice"):
        return None
    return 1 if type_name == "Conv1D" or attrs.get("transposed_weight") or kind == "conv_transpose" else 0


def unit_deviations(params: dict[str, torch.nn.Parameter], unit_dims: dict[str, int],
                    sharded: bool = False, hot: HotSquares | None = None) -> dict[str, float]:
    """||W - the mean unit's weights|| for each weight whose units lie along ``unit_dims[name]`` (rows of a
    Linear, output channels of a conv): 0 exactly when every unit has the same incoming weights.

    Per weight, in blocks of columns (one unit's weight per row): the block centred into one reused
    buffer (see :func:`_centred_squares`); one transfer for all weights. On CPU the former
    ``var_mean`` across units (a strided float32 Welford reduction) took 1.8 ms for a 512x512
    weight, 57 of the 30-layer MLP's 62 ms of parameter norms; this takes ~0.17 ms, agrees with a
    float64 reference to ~1e-9 relative (float32 Welford was off by ~4e-8), and its memory is one
    buffer of at most :data:`CENTRING_BLOCK` elements (a fresh one per weight page-faults: 1 ms for
    2 MiB on this VM).
    """
    names = [n for n, dim in unit_dims.items() if (p := params.get(n)) is not None and p.dim() >= 2 and p.shape[dim] >= 2]
    if not names:
        return {}
    found = _shortcut_deviations(params, names, hot, unit_dims) if hot is not None and hot.spreads else {}
    exact = unit_deviations(params, {n: unit_dims[n] for n in names if n not in found}, sharded) if found else None
    if exact is not None:
        return {name: found[name] if name in found else exact[name] for name in names}
    with torch.no_grad():
        order, values = [], []
        small: dict[tuple[torch.device, int, torch.Size], list[tuple[str, torch.Tensor]]] = {}
        size = max(max(min(CENTRING_BLOCK, params[n].numel()), params[n].shape[unit_dims[n]]) for n in names)
        buffers: dict[torch.device, torch.Tensor] = {}
        for name in names:
            w = params[name]  # no detached copy: nothing below records under no_grad
            if sharded and hasattr(w, "full_tensor"):  # FSDP2: the whole weight, one layer at a time
                w = w.detach().full_tensor()
            if not w.is_floating_point():  # an integer (quantised) weight: its differences would wrap around
                w = w.to(torch.float64)
            dim = unit_dims[name]
            if w.numel() <= SMALL_WEIGHT:  # many tiny layers: per-call overhead, not bandwidth; batched below
                small.setdefault((w.device, dim, w.shape), []).append((name, w))
                continue
            w = w.movedim(dim, 0).reshape(w.shape[dim], -1)
            buffer = buffers.get(w.device)
            if buffer is None:
                buffer = buffers[w.device] = torch.empty(size, dtype=_centring_dtype(params), device=w.device)
            order.append(name)
            values.append(_centred_squares(w, buffer).reshape(1))
        for (_, dim, shape), group in small.items():  # weights of one shape: stacked, centred and squared together
            block = torch.stack([w for _, w in group]).movedim(dim + 1, 1).reshape(len(group), shape[dim], -1)
            block = block.to(torch.float64)
            block -= block.mean(dim=1, keepdim=True)
            order += [name for name, _ in group]
            values.append(block.square_().sum(dim=(1, 2)))
        squares = torch.cat(values).cpu().tolist()
    found = dict(zip(order, squares))
    return {name: math.sqrt(max(found[name], 0.0)) for name in names}


def _centring_dtype(params: dict[str, torch.nn.Parameter]) -> torch.dtype:
    """float32, or float64 when any weight is float64 (half-precision weights centre in float32)."""
    return torch.float64 if any(p.dtype == torch.float64 for p in params.values()) else torch.float32


def _shortcut_deviations(params: dict[str, torch.nn.Parameter], names: list[str], hot: HotSquares,
                         dims: dict[str, int]) -> dict[str, float]:
    """Deviations from the terms :class:`HotSquares` took during the passes, where the shortcut
    keeps its precision (:data:`SPREAD_SHORTCUT`); one transfer."""
    spreads = {name: spread for name in names if (spread := hot.spread(params[name], dims[name])) is not None}
    if not spreads:
        return {}
    terms = torch.stack([t for spread in spreads.values() for t in spread[:2]]).cpu().view(-1, 2).tolist()
    found = {}
    for (name, spread), (rows, columns) in zip(spreads.items(), terms):
        squares = rows - columns / spread[2]  # in float64, on the host
        if math.isfinite(rows) and squares >= SPREAD_SHORTCUT * rows > 0:  # NaN/Inf, near-identical: exact
            found[name] = math.sqrt(squares)
    return found


SMALL_WEIGHT = 1 << 12
"""Weights up to this many elements are centred together with the others of their shape (a 4x4
Linear's own four calls cost ~50 us; 60 of them in one stack ~0.1 ms)."""
CENTRING_BLOCK = 1 << 18
"""Elements of the buffer :func:`unit_deviations` centres weights in (1 MiB in float32, half this
VM's L2 cache): a whole 512x512 weight in one block, a larger one in blocks of columns."""


def _centred_squares(w: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """Sum over a (units, k) matrix of (w[u, j] - mean over units of w[:, j])^2, as a float64 device
    scalar: blocks of columns are centred independently, each in ``buffer`` (at least ``units``
    elements, overwritten, float32 or wider), and each unit's row of the block squared and summed.

    Each column is shifted by its first unit's value before it is centred: the subtraction is exact
    where the units are (nearly) identical -- the case the statistic exists to catch, where it must
    give 0 exactly -- so float32 centring loses nothing there, and the float32 rounding of random
    weights moves the result by ~1e-9 relative. Row norms (float32 over ``k``) are squared and
    summed in float64. On CPU a 512x512 weight takes ~0.17 ms against 0.31-0.43 ms for centring
    a float64 copy (which also needed twice the buffer).
    """
    units, k = w.shape
    step = max(1, buffer.numel() // units)
    parts = []
    for start in range(0, k, step):
        part = w[:, start : start + step]
        block = torch.sub(part, part[0], out=buffer[: part.numel()].view(part.shape))
        block -= block.mean(dim=0)
        parts.append(torch.linalg.vector_norm(block, dim=1).double().square().sum())
    return parts[0] if len(parts) == 1 else torch.stack(parts).sum()


LARGE = 1 << 16
"""Tensors from this many elements take a BLAS dot each in :func:`sums_of_squares` (and may be taken hot)."""


SPREAD_SHORTCUT = 0.25
"""The shortcut ``S - |c|^2 / n`` for a weight's squared deviation is used when it is at least this
share of ``S`` (a unit spread of 0.5 or more; random init gives ~1). ``S`` is the weight's own
sum of squares (the float32 BLAS dot its norm comes from, good to ~1e-6 relative on a few
million elements) and ``|c|^2`` a float32 dot over the k column sums (alike), so, the difference
being at least a quarter of ``S``, the spread is then good to a few 1e-6 -- three more digits than any
verdict or table uses. Below it (units close to identical: what the symmetry rule looks for,
where the difference cancels) the weight is centred exactly instead."""


def parameter_measures(module: torch.nn.Module, params: dict[str, torch.nn.Parameter], batches: int,
                       unit_dims: dict[str, int] | None = None, sharded: bool = False,
                       hot: HotSquares | None = None, aliases: dict[int, list[str]] | None = None) -> list[ParamMeasure]:
    """Gradient and weight norms per unique parameter, with fused multi-tensor kernels and one
    device-to-host transfer. Gradients are the mean over batches; tied names become aliases. For the
    weights of ``unit_dims``, also how far their units' weights are from identical. ``sharded``: the
    parameters are FSDP2 DTensors; each rank squares its shards and one all-reduce sums them.
    ``aliases``: id(parameter) -> all its names (:class:`~gradcheck_cli.measure.tree.ModuleTree`), else walked here."""
    if aliases is None:
        aliases = module_tree(module).aliases
    plist = list(params.values())
    if not plist:
        return []
    with torch.no_grad():  # the reductions below record nothing, so the parameters need no detached copies
        with_grad = [p for p in plist if p.grad is not None]
        grads = [p.grad for p in with_grad]
        weights: list[torch.Tensor] = plist
        if sharded:  # FSDP2: each rank's shards
            weights, grads = [local_tensor(p.detach()) for p in plist], [local_tensor(g.detach()) for g in grads]
        known: dict[int, torch.Tensor] = {}
        if hot is not None and (hot.weights or hot.grads):  # taken during the passes (see HotSquares)
            for i, p in enumerate(plist):
                if (taken := hot.weight_squares(p)) is not None:
                    known[i] = taken
            for j, p in enumerate(with_grad):
                if (taken := hot.grad_squares(p)) is not None:
                    known[len(plist) + j] = taken
        squares = sums_of_squares(weights + grads, known)
        if sharded:
            squares = _summed_across_ranks(squares)
        values = [math.sqrt(max(v, 0.0)) if not math.isnan(v) else v for v in squares]
    count = len(plist)
    weight_norms, grad_norms = values[:count], iter(values[count:])
    deviations = unit_deviations(params, canonical_dims(unit_dims or {}, params, aliases), sharded, hot=hot)
    result = []
    for i, (name, p) in enumerate(params.items()):
        grad_norm = next(grad_norms) / batches if p.grad is not None else None
        names = aliases.get(id(p), ())
        result.append(ParamMeasure(
            name=name, shape=tuple(p.shape), numel=p.numel(), requires_grad=p.requires_grad,
            weight_norm=weight_norms[i], grad_norm=grad_norm,
            aliases=[a for a in names if a != name] if len(names) > 1 else [], unit_deviation=deviations.get(name),
            quantised=None if p.is_floating_point() or p.is_complex() else str(p.dtype).removeprefix("torch."),
        ))
    return result


def canonical_dims(dims: dict[str, int], params: dict[str, torch.nn.Parameter],
               aliases: dict[int, list[str]]) -> dict[str, int]:
    """``dims`` keyed by the names ``params`` uses: a layer names the weight it holds (``lm_head.weight``),
    which for a tied weight may be an alias of the parameter's first name (``transformer.wte.weight``)."""
    if all(name in params for name in dims):
        return dims
    canonical = {alias: name for name, p in params.items() for alias in aliases.get(id(p), ())}
    out: dict[str, int] = {}
    for name, dim in dims.items():
        out.setdefault(canonical.get(name, name), dim)
    return out


def _summed_across_ranks(values: list[float]) -> list[float]:
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()
