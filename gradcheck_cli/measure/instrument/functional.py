"""Functional activations and weight layers (``F.relu(self.fc(x))``, ``F.linear(x, self.w)``): the calls no
module hook sees, caught by a :class:`~torch.overrides.TorchFunctionMode` while the model runs and named
after the module they run in (``block.relu``). The module front end (:mod:`.modules`) enters the mode
and keeps the call bookkeeping it reads (the module stack, the rows, the parameter names)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from gradcheck_cli.layers import LayerInfo

if TYPE_CHECKING:
    from gradcheck_cli.measure.instrument.modules import _Calls


def _functional_kinds() -> dict[Any, str]:
    table: dict[Any, str] = {}
    for kind, names in {
        "relu": ["relu", "relu_"], "relu6": ["relu6"], "leaky_relu": ["leaky_relu", "leaky_relu_"],
        "elu": ["elu", "elu_"], "selu": ["selu", "selu_"], "celu": ["celu"], "gelu": ["gelu"],
        "silu": ["silu"], "mish": ["mish"], "softplus": ["softplus"], "sigmoid": ["sigmoid", "sigmoid_"],
        "tanh": ["tanh", "tanh_"], "hardtanh": ["hardtanh", "hardtanh_"], "hardsigmoid": ["hardsigmoid"],
        "hardswish": ["hardswish"], "softsign": ["softsign"],
    }.items():
        for name in names:
            for namespace in (F, torch, torch.Tensor, torch.special):
                fn = getattr(namespace, name, None)
                if fn is not None:
                    table[fn] = kind
    return table


_FUNCTIONAL = _functional_kinds()
_FUNCTIONAL_LAYERS = {F.linear: "linear", F.conv1d: "conv", F.conv2d: "conv", F.conv3d: "conv", F.embedding: "embedding"}
_EXPERT_MATMULS = {fn for fn in (getattr(F, "grouped_mm", None), getattr(torch, "_grouped_mm", None), torch.bmm) if fn}
"""Fused-expert products ``x @ W`` whose weight operand (in, out per expert) is a model parameter or a slice,
index or transpose of one (Hugging Face MoE's grouped_mm / batched_mm implementations)."""
for _fn in _EXPERT_MATMULS:
    _FUNCTIONAL_LAYERS[_fn] = "linear"
"""Weight layers called as functions with a module's parameters (``F.linear(x, self.w)`` in Mamba-style
code, fused MoE experts): observed like activations, their parameters found by identity."""


class ActivationMode(TorchFunctionMode):
    def __init__(self, calls: _Calls) -> None:
        super().__init__()
        self.calls = calls

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch protocol
        out = func(*args, **(kwargs or {}))
        if self.calls.in_layer or not isinstance(out, torch.Tensor):  # most calls: inside a layer's own forward
            return out
        layer_kind = _FUNCTIONAL_LAYERS.get(func)
        if layer_kind is not None:
            self._weight_layer(func, layer_kind, args, kwargs or {}, out)
            return out
        kind = _FUNCTIONAL.get(func)
        if kind is not None:
            parent = self.calls.stack[-1] if self.calls.stack else ""
            name = f"{parent}.{func.__name__.rstrip('_')}" if parent else func.__name__.rstrip("_")
            if torch._C._current_graph_task_id() != -1:  # a recomputation inside the backward (checkpointing)
                self.calls.recomputed(name, out)
                return out
            attrs = {}
            if kind == "leaky_relu":
                slope = args[1] if len(args) > 1 else (kwargs or {}).get("negative_slope", 0.01)
                attrs = {"negative_slope": float(slope)}
            self._observed(self.calls.row(name, kind, f"F.{func.__name__}", {"attrs": attrs}), out)
        return out

    def _observed(self, info: LayerInfo, out: torch.Tensor) -> None:
        self.calls.collector.observe(info, out)
        if out.requires_grad:
            self.calls.replay.hooked.add(info.index)

    def _parameter_of(self, weight: Any, *, matmul: bool) -> tuple[str | None, dict[str, float]]:
        """The model parameter a weight operand is, or is a slice/index/transpose of (an expert of a fused
        expert weight: ``F.linear(x, self.gate_up_proj[e])``, ``grouped_mm(x, W.transpose(-2, -1))``), with
        the row's attrs: for a derived operand, ``expert_slice`` (its fans are those of one expert's matrix,
        the parameter's last two dims) and ``transposed_weight`` when the parameter stores (in, out)."""
        name = self.calls.param_names.get(id(weight))
        if not isinstance(weight, torch.Tensor) or (name is not None and not matmul):
            return name, {}
        source = weight if name is not None else _leaf_parameter(weight)
        name = self.calls.param_names.get(id(source)) if source is not None else None
        if name is None or source.dim() < 2 or weight.dim() < 2:
            return None, {}
        attrs = {"expert_slice": 2.0} if source.dim() > 2 or source is not weight else {}
        stored, used = tuple(source.shape[-2:]), tuple(weight.shape[-2:])
        # F.linear's operand is (out, in); a matmul's is (in, out): a parameter that matches the operand's
        # own layout in a matmul stores (in, out), i.e. transposed against nn.Linear's
        if matmul and stored == used and stored[0] != stored[1]:
            attrs["transposed_weight"] = 1.0
        return name, attrs

    def _weight_layer(self, func, kind: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:  # noqa: ANN001
        """A functional weight layer whose weight is one of the model's parameters gets a row of its own."""
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        bias = args[2] if len(args) > 2 and kind != "embedding" else kwargs.get("bias")
        weight_name, attrs = self._parameter_of(weight, matmul=func in _EXPERT_MATMULS)
        if weight_name is None and func is torch.bmm and args:  # bmm(W, x): the weight first, (out, in) per expert
            weight_name, attrs = self._parameter_of(args[0], matmul=False)
            bias = None
        if weight_name is None:
            return  # computed weights (not a parameter): nothing to attribute the gradient to
        params = {"weight": weight_name}
        if self.calls.param_names.get(id(bias)):
            params["bias"] = self.calls.param_names[id(bias)]
        parent = self.calls.stack[-1] if self.calls.stack else ""
        op = func.__name__
        name = f"{parent}.{op}" if parent else op
        with torch._C.DisableTorchFunction():
            if torch._C._current_graph_task_id() != -1:  # a recomputation inside the backward (checkpointing)
                self.calls.recomputed(name, out)
                return
            self._observed(self.calls.row(name, kind, f"F.{op}", {"params": params, "attrs": attrs}), out)


def _leaf_parameter(t: torch.Tensor, depth: int = 4) -> torch.Tensor | None:
    """The parameter a tensor is a view or an index of: its ``_base``, else the leaf reached through at most
    ``depth`` single-input autograd nodes (select, index, transpose, expand)."""
    if t._base is not None and isinstance(t._base, nn.Parameter):
        return t._base
    node = t.grad_fn
    for _ in range(depth):
        if node is None:
            return None
        inputs = [n for n, _ in node.next_functions if n is not None]
        if len(inputs) != 1:
            return None
        node = inputs[0]
        variable = getattr(node, "variable", None)
        if variable is not None:
            return variable if isinstance(variable, nn.Parameter) else None
    return None
