"""Parameter statistics taken while the data is in cache, during the passes, instead of in one more read
of every weight and gradient from memory after them (what :func:`~gradcheck_cli.measure.params.parameter_measures`
does for everything not taken here)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn.parameter import UninitializedTensorMixin

from gradcheck_cli.measure.params import LARGE
from gradcheck_cli.measure.reductions import HALF, squares_of


class HotSquares:
    """Each large parameter's sum of squares, and its gradient's, taken while they are in cache
    instead of in one more read of every weight and gradient from memory after the passes.

    A layer module's large weights are read right after its forward read them (:meth:`take_weights`,
    called by the module front end's hook); every large parameter's gradient in a post-accumulate-grad
    hook right after autograd wrote it, together with any weight terms the forward did not take (a
    weight a container or a functional call used, a front end without module hooks). Armed for the
    last batch only (the gradient is final then); a tied parameter has one accumulation node, so it is
    taken once. Each weight term records the parameter's version counter and is used only if the
    weight is unchanged at the end (a forward that edits its weights in place). Not for distributed
    runs, whose gradients are reduced after these hooks.

    Where a weight's unit dimension is known (from its layer in the forward; else from ``units``,
    called once, at the first armed backward hook, when every layer is known: what :func:`~gradcheck_cli.measure.params.unit_dims`
    gives), its unit spread is prepared from one more read of the cached weight, its column sums:
    ``S - |c|^2 / n``, with ``S`` the weight's sum of squares taken anyway, is the squared deviation
    from the mean unit (see :func:`~gradcheck_cli.measure.params.unit_deviations`, which uses it only where it keeps its precision,
    :data:`~gradcheck_cli.measure.params.SPREAD_SHORTCUT`, and only for the unit dimension it ends up with). That replaces three to
    five cold passes over every weight after the backward: on the 30-layer MLP, parameter statistics
    went from 18.7 to 2.5 ms a call after the backward on one VM. Taking the weights' terms in the
    forward rather than the backward, where the layer's gradient has pushed part of the weight out of
    a 2 MiB L2 cache, took the MLP's hot terms from ~5.1 to ~3.3 ms a call (one torch thread).
    """

    def __init__(self, params: dict[str, torch.nn.Parameter],
                 units: Callable[[], dict[str, int]] | None = None, *, weights: bool = True) -> None:
        self.armed = False
        self.take_weights_too = weights
        """False: gradients only (a training step's record reads the weights after the optimiser's step)."""
        self.weights: dict[int, tuple[torch.Tensor, int]] = {}
        """id(parameter) -> (its sum of squares in the weight's precision, float32 at least; its version
        when taken)."""
        self.grads: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
        """id(parameter) -> (its gradient's sum of squares, a float32 device scalar; that gradient; its version):
        used only while the parameter still holds that gradient, unchanged (clipping scales it in place)."""
        self.spreads: dict[int, tuple[torch.Tensor, torch.Tensor, int, int, int]] = {}
        """id(weight) -> (its sum of squares, |column sums|^2, units, the unit dimension, its version):
        device scalars of the weight's precision (float32 at least), divided and subtracted in float64
        on the host."""
        self._units = units
        self._dims: dict[int, int] | None = None
        self._ones_cache: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}
        self._names = {id(p): name for name, p in params.items()}
        self._handles = [p.register_post_accumulate_grad_hook(self._take) for p in params.values()  # lazy: not sized yet
                         if p.requires_grad and not isinstance(p, UninitializedTensorMixin) and p.numel() >= LARGE]

    def take_weights(self, weights: tuple[tuple[torch.Tensor, int | None], ...]) -> None:
        """A layer's large parameters with their unit dimensions (None: no units), right after its forward."""
        if not self.armed or not self.take_weights_too:
            return
        for p, dim in weights:
            if id(p) not in self.weights:
                self._take_weight(p.detach(), p, dim if dim is not None and _spreadable(p, dim) else None)

    def _take(self, p: torch.Tensor) -> None:
        """The gradient's dot, and the weight's terms where the forward did not take them: in situ
        each extra small op (a dtype cast, a square, a division) costs 3-5 us, which came to a third
        of this hook's time on the MLP, so the float64 arithmetic is done on the host."""
        grad = p.grad
        if not self.armed or grad is None:
            return
        self.grads[id(p)] = (squares_of(grad.detach()).float(), grad, grad._version)
        if not self.take_weights_too:
            return
        taken, dim = self.weights.get(id(p)), self._unit_dim(p)
        if taken is None or taken[1] != p._version:
            self._take_weight(p.detach(), p, dim)
        elif dim is not None and self.spreads.get(id(p), (None,) * 4)[3] != dim:
            # a tied weight whose first layer in the forward had no units (an embedding before its LM head)
            self.spreads[id(p)] = (taken[0], self._column_squares(p.detach(), dim), p.shape[dim], dim, taken[1])

    def _take_weight(self, w: torch.Tensor, p: torch.Tensor, dim: int | None) -> None:
        squares = squares_of(w)
        version = p._version
        self.weights[id(p)] = (squares, version)
        if dim is not None:
            self.spreads[id(p)] = (squares, self._column_squares(w, dim), p.shape[dim], dim, version)

    def weight_squares(self, p: torch.Tensor) -> torch.Tensor | None:
        """``squares_of(p).float()`` as taken during the passes, if ``p`` is unchanged since."""
        taken = self.weights.get(id(p))
        return taken[0].float() if taken is not None and taken[1] == p._version else None

    def grad_squares(self, p: torch.Tensor) -> torch.Tensor | None:
        """``squares_of(p.grad).float()`` as taken in the backward, if ``p`` still holds that gradient, unchanged."""
        taken = self.grads.get(id(p))
        return taken[0] if taken is not None and p.grad is taken[1] and taken[1]._version == taken[2] else None

    def spread(self, p: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, int] | None:
        """(S, |c|^2, units) of ``p`` along ``dim``, if taken along it and ``p`` is unchanged since."""
        terms = self.spreads.get(id(p))
        if terms is None or terms[3] != dim or terms[4] != p._version:
            return None
        return terms[:3]

    def _unit_dim(self, p: torch.Tensor) -> int | None:
        if self._units is None:
            return None
        if self._dims is None:
            found = self._units()
            self._dims = {key: found[name] for key, name in self._names.items() if name in found}
        dim = self._dims.get(id(p))
        return dim if dim is not None and _spreadable(p, dim) else None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _column_squares(self, w: torch.Tensor, dim: int) -> torch.Tensor:
        """|sum over units of w_u|^2 of a weight whose units lie along ``dim`` (0, or 1 of a 2-d weight), as
        a device scalar of the weight's precision, float32 at least: one read-only pass for the sums and
        one dot over them (k elements: float32 keeps ~1e-6 of it, which :data:`~gradcheck_cli.measure.params.SPREAD_SHORTCUT` bounds in
        the result).

        float32/float64 weights sum their units with a BLAS matrix-vector product by a vector of ones
        (one contiguous streaming read): in situ, on the 30-layer MLP's 512x512 weights, the strided
        ``sum(dim=0)`` took ~0.4 ms more a call for the 30 weights. Half precision keeps the float32
        sum (a half-precision product would round the sums to 3 digits, or overflow at 65504)."""
        matrix = w.view(w.shape[0], -1) if dim == 0 else w
        if w.dtype in HALF:
            sums = matrix.sum(dim=dim, dtype=torch.float32)
        else:  # units along rows (dim 0): 1^T W, i.e. W^T 1; along columns: W 1
            sums = torch.mv(matrix.t() if dim == 0 else matrix, self._ones(matrix.shape[dim], w))
        return torch.dot(sums, sums)

    def _ones(self, n: int, like: torch.Tensor) -> torch.Tensor:
        """A vector of n ones of ``like``'s dtype and device, made once a run."""
        key = (n, like.dtype, like.device)
        ones = self._ones_cache.get(key)
        if ones is None:
            ones = self._ones_cache[key] = torch.ones(n, dtype=like.dtype, device=like.device)
        return ones


def _spreadable(p: torch.Tensor, dim: int) -> bool:
    """Whether the shortcut's column sums can read ``p`` as it is: a transposed conv's units (dim 1 of
    4) would need a copy, and an integer weight's sums would wrap around; the cold path takes those."""
    return (p.is_floating_point() and p.is_contiguous() and p.dim() >= 2 and p.shape[dim] >= 2
            and (dim == 0 or p.dim() == 2))
