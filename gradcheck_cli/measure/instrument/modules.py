"""nn.Module front end: forward hooks on layer modules, plus functional activations.

Many models call activations as functions (``F.relu(self.fc(x))``), which no module hook sees;
:mod:`.functional` catches those calls and names them after the module they run in (``block.relu``),
so dead-ReLU and saturation statistics do not depend on coding style. Calls made inside a hooked
layer module are left to that module's hook. Segments re-run inside the backward by activation
checkpointing are mapped back onto the forward's rows by :mod:`.recompute`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.parameter import UninitializedTensorMixin

from gradcheck_cli.layers import MODULE_KINDS, TRANSPARENT_KINDS, LayerInfo, module_kind
from gradcheck_cli.measure.model_output import first_tensor
from gradcheck_cli.measure.collector import StatsCollector
from gradcheck_cli.measure.instrument.functional import ActivationMode
from gradcheck_cli.measure.instrument.recompute import Recomputation, markers
from gradcheck_cli.measure.params import LARGE, unit_dim
from gradcheck_cli.measure.through_time import RECURRENT_MODULES, time_profile
from gradcheck_cli.measure.tree import ModuleTree, module_tree


def is_layer_module(module: nn.Module, name: str = "") -> bool:
    """Modules that get a row: leaves, known layers that hold children (MultiheadAttention), and layers
    whose weight is reparametrised (weight/spectral norm: ``ParametrizedConv1d``), not the
    parametrisation modules themselves (they compute a weight, not an activation)."""
    if ".parametrizations." in f".{name}.":
        return False
    kind = module_kind(type(module).__name__)
    if kind in TRANSPARENT_KINDS and kind != "pool":
        return False
    if _reparametrised(module):
        return kind != "other"
    return next(module.children(), None) is None or type(module).__name__ in MODULE_KINDS


def _reparametrised(module: nn.Module) -> bool:
    # torch.nn.utils.parametrize registers ``parametrizations`` as a child module; looking in
    # ``_modules`` is what ``getattr`` ends at, without ``nn.Module.__getattr__`` raising and catching
    # an AttributeError on every other module (3 calls a module, ~4 us each). A scripted submodule's
    # ``_modules`` is TorchScript's own mapping (no ``get``), and it cannot be parametrised
    modules = getattr(module, "_modules", None)
    return isinstance(modules, dict) and isinstance(modules.get("parametrizations"), nn.ModuleDict)


def _params(name: str, module: nn.Module, reparametrised: bool, pruned: list[str]) -> dict[str, str]:
    """Role -> parameter name. A reparametrised weight's role goes to the tensor it is computed from: the
    direction ``original1`` of weight norm (``original0`` is its magnitude), or the single ``original``."""
    params = {role: f"{name}.{role}" for role, p in module._parameters.items() if p is not None}
    for role in pruned:  # torch.nn.utils.prune: the layer computes weight = weight_orig * weight_mask
        params[role] = params.pop(f"{role}_orig")
    if reparametrised:
        for role, parametrization in module.parametrizations.items():
            held = dict(parametrization.named_parameters(recurse=False))
            source = "original1" if "original1" in held else "original" if "original" in held else None
            if source is not None:
                params[role] = f"{name}.parametrizations.{role}.{source}"
            if "original0" in held:  # weight norm's magnitude g
                params[f"{role}_magnitude"] = f"{name}.parametrizations.{role}.original0"
    return params


def _pruned(module: nn.Module) -> list[str]:
    """The roles ``torch.nn.utils.prune`` masks on this module: a ``<role>_orig`` parameter beside a
    ``<role>_mask`` buffer (the module's ``<role>`` is then a plain tensor computed before each call)."""
    params, buffers = module._parameters, module._buffers
    if not buffers or not isinstance(params, dict) or not isinstance(buffers, dict):  # no mask, or scripted
        return []
    return [key[:-5] for key in params if key.endswith("_orig") and f"{key[:-5]}_mask" in buffers]


def _attrs(module: nn.Module) -> dict[str, float]:
    """Hyper-parameters the verdicts need. Read from the instance dict: ``getattr`` on a missing
    name goes through ``nn.Module.__getattr__`` and an exception, per key per module per run."""
    fields = vars(module)
    return {
        key: float(fields[key])
        for key in ("negative_slope", "min_val", "max_val", "lower", "upper", "groups")
        if isinstance(fields.get(key), (int, float)) and not isinstance(fields.get(key), bool)
    }


class _Calls:
    """Per-batch call bookkeeping: which layer row a call maps to, and the module stack for naming."""

    def __init__(self, collector: StatsCollector) -> None:
        self.collector = collector
        self.rows: dict[tuple[str, int], LayerInfo] = {}
        self.counts: dict[str, int] = {}
        self.stack: list[str] = []
        self.in_layer = 0
        self.skipping = False
        """The model's call now is not observed (see :attr:`StatsCollector.skip_without_grad`)."""
        self.param_names: dict[int, str] = {}
        self.mode: ActivationMode | None = None
        """The functional mode while it is entered (between the root module's hooks), else None."""
        self.suspended = False
        """The mode is off torch's stack for the outermost layer module running now (see :meth:`suspend`)."""
        self.replay = Recomputation()
        """The forward's call log, and the replay of a segment re-run inside the backward (checkpointing)."""

    def begin_batch(self) -> None:
        self.counts.clear()
        self.stack.clear()
        self.in_layer = 0
        self.replay.begin_batch()

    def recomputed(self, name: str, output: torch.Tensor) -> None:
        """A layer's output from a segment re-run inside the backward (activation checkpointing,
        :mod:`.recompute`): where its forward row's output had no gradient hook (reentrant checkpointing
        ran that forward without gradients), the recomputed output's gradient is the layer's."""
        index = self.replay.row(name, self.collector.layers)
        if index is None or index in self.replay.hooked or not output.requires_grad:
            return
        self.replay.hooked.add(index)
        self.collector.observe_gradient(self.collector.layers[index], output)

    def suspend(self) -> None:
        """Take the functional mode off torch's stack while a layer module runs: every torch call inside
        it (its F.linear, a GELU module's eight ops) would go through the mode only to be passed on, at
        7-17 us a call in situ (a GPT-2 forward makes 124 of them inside layers). Only when the mode is
        on top: a mode the model pushed itself is left alone, and the layer's calls then pass through
        ours, which ignores them as before."""
        mode = self.mode
        if mode is not None and not self.suspended:
            depth = torch._C._len_torch_function_stack()
            if depth and torch._C._get_function_stack_at(depth - 1) is mode:
                torch._C._pop_torch_function_stack()
                self.suspended = True

    def resume(self) -> None:
        """Put the mode back when the outermost layer module returns (or raises: its hook always runs)."""
        if self.suspended:
            self.suspended = False
            torch._C._push_on_torch_function_stack(self.mode)

    def row(self, name: str, kind: str, type_name: str, extra: dict[str, Any] | None = None) -> LayerInfo:
        """The row of this call of ``name`` (``name#2`` for its second call in a batch); ``extra``: the
        LayerInfo fields a new row gets (params, attrs), passed as one dict built once per hook."""
        call = self.counts.get(name, 0)
        self.counts[name] = call + 1
        info = self.rows.get((name, call))
        if info is None:
            shown = name if call == 0 else f"{name}#{call + 1}"
            info = self.collector.add_layer(shown, kind, type_name, **(extra or {}))
            self.rows[(name, call)] = info
        self.replay.events.append(info.index)
        return info


@contextmanager
def instrument_modules(model: nn.Module, collector: StatsCollector, *, functional: bool = True,
                       tree: ModuleTree | None = None) -> Iterator[Any]:
    """Hook every layer module of ``model``; yield the forward function (the model itself: a training
    loop that calls ``model(x)`` is observed too). Hooks are removed on exit.

    Two process-wide module hooks (``torch.nn.modules.module.register_module_forward_pre_hook`` and
    ``register_module_forward_hook``) look each called module up by identity in this model's table,
    instead of two hooks registered and removed on every module per call: a registration and its
    removal cost ~3 us a hook (a handle holding weak references to three dicts), 1.1 ms for T5's
    191 modules. A module outside the model (another model run meanwhile, from any thread) finds
    no entry and returns at once. They run before a module's own forward hooks, so a user hook that
    replaces a module's output is seen as the forward returned it."""
    if tree is None:
        tree = module_tree(model)
    calls = _Calls(collector)
    calls.param_names = {id(p): name for name, p in tree.params.items()}
    begin, end, leave, recompute = _root_hooks(calls, ActivationMode(calls) if functional else None)
    table: dict[int, tuple[str, _Layer | None, int, int]] = {}
    for name, module in tree.modules:
        layer = bool(name) and is_layer_module(module, name)
        if functional or layer:  # containers only name the functional calls made inside them
            table[id(module)] = (name, _Layer.of(name, module) if layer else None, *markers(len(table)))
    pre_hook, hook = _dispatch(calls, table, id(model), begin, end, recompute)
    handles = []
    try:
        with _compiled_code_off():
            handles.append(torch.nn.modules.module.register_module_forward_pre_hook(pre_hook))
            handles.append(torch.nn.modules.module.register_module_forward_hook(hook, always_call=True))
            yield model
    finally:
        leave()
        for handle in handles:
            handle.remove()


def _compiled_code_off() -> AbstractContextManager[Any]:
    """``torch.compile``'d code runs its Python while the model is instrumented. A compiled graph calls no module
    hook: a model compiled before the hooks went on (a training loop's ``torch.compile(model)`` under a Monitor,
    ``module.compile()``, a compiled submodule) was not observed at all -- a report of 0 layers and no finding --
    and one first compiled with the hooks on traced into them, recompiling per module. ``set_stance("force_eager")``
    (torch >= 2.6) is process-wide and leaves the compiled code cached, so the steps in between run it compiled."""
    if "torch._dynamo" not in sys.modules:  # nothing was compiled (torch.compile imports it; importing it takes ~1 s)
        return nullcontext()
    set_stance = getattr(torch.compiler, "set_stance", None)
    if set_stance is None or torch.compiler.is_compiling():  # (it may not be set from inside a compiled region)
        return nullcontext()
    return set_stance("force_eager")  # ~7 us


class _Layer(NamedTuple):
    """What a layer module's row needs, read from the module once per run."""

    kind: str
    type_name: str
    extra: dict[str, Any]
    """The fields a new row gets (params, attrs)."""
    recurrent: bool
    weights: tuple[tuple[nn.Parameter, int | None], ...]
    """The module's own large parameters, each with its unit dimension (the weight of a weight layer;
    None for the rest): read while in cache right after the forward (:class:`~gradcheck_cli.measure.params.HotSquares`)."""

    @classmethod
    def of(cls, name: str, module: nn.Module) -> _Layer:
        type_name = type(module).__name__
        reparametrised = _reparametrised(module)
        pruned = _pruned(module)
        attrs = _attrs(module) | ({"reparametrized": 1.0} if reparametrised else {}) | (
            {"pruned": 1.0} if "weight" in pruned else {})
        kind = module_kind(type_name)
        dim = unit_dim(kind, type_name, attrs)
        weights = tuple((p, dim if role == "weight" else None) for role, p in module._parameters.items()
                        if p is not None and not isinstance(p, UninitializedTensorMixin) and p.numel() >= LARGE)
        return cls(kind, type_name, {"params": _params(name, module, reparametrised, pruned), "attrs": attrs},
                   type_name in RECURRENT_MODULES, weights)


def _dispatch(calls: _Calls, table: dict[int, tuple[str, _Layer | None, int, int]], root: int, begin: Any,
              end: Any, recompute: Any):
    """The two process-wide hooks: a module's name goes on the stack before it runs and off after; a
    layer's output is observed; the root's call also starts and ends the batch (:func:`_root_hooks`), and
    a module of the model re-run inside the backward (activation checkpointing) holds the functional mode
    for the recomputation's functional calls (``recompute``)."""
    entry_of, stack, collector, replay = table.get, calls.stack, calls.collector, calls.replay
    push, graph_task = stack.append, torch._C._current_graph_task_id  # -1 outside a backward pass
    log = replay.events.append  # a module call's start and end markers (see .recompute)

    def pre_hook(module: nn.Module, args: Any) -> None:
        key = id(module)
        if key == root:
            begin(module, args)
        if calls.skipping:
            return
        entry = entry_of(key)
        if entry is None:
            return
        if graph_task() == -1:
            log(entry[2])
        elif replay.owner is None:  # the first module of a segment re-run inside the backward
            recompute(key, entry, True)
        push(entry[0])
        if entry[1] is not None:
            calls.in_layer += 1
            if calls.in_layer == 1:
                calls.suspend()

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        key = id(module)
        if calls.skipping:
            if key == root:
                end(module, args, output)
            return
        entry = entry_of(key)
        if entry is not None:
            forward = graph_task() == -1
            name, layer = entry[0], entry[1]
            if stack and stack[-1] == name:
                stack.pop()
            if layer is not None:
                calls.in_layer -= 1
                if not calls.in_layer:
                    calls.resume()
                tensor = output if isinstance(output, torch.Tensor) else first_tensor(output)
                if tensor is not None and not forward:  # a segment re-run inside the backward
                    with torch._C.DisableTorchFunction():
                        calls.recomputed(name, tensor)
                elif tensor is not None:
                    info = calls.row(name, layer.kind, layer.type_name, layer.extra)
                    with torch._C.DisableTorchFunction():  # our own reductions need not pass through the mode
                        collector.observe(info, tensor)
                        if layer.weights and collector.hot is not None:
                            collector.hot.take_weights(layer.weights)
                        if tensor.requires_grad:  # inside: a tensor's attribute read goes through the mode too
                            replay.hooked.add(info.index)
                    if layer.recurrent and collector.wants_time(info):
                        with torch._C.DisableTorchFunction():  # the probe's own passes are not the model's calls
                            collector.observe_time(info, time_profile(module, args, collector.seed + info.index))
            if forward:
                log(entry[3])
        if key == root:  # after the root's own row
            end(module, args, output)
        elif replay.owner == key:
            recompute(key, entry, False)

    return pre_hook, hook


def _root_hooks(calls: _Calls, mode: ActivationMode | None) -> tuple[Any, Any, Any]:
    """A call of the model starts a batch's bookkeeping and, for its duration only, the functional
    mode (entered and left by the root module's own hooks, so it is active exactly while the model
    runs, however the caller invokes it; ``always_call`` leaves it when the forward raises an
    Exception). The third function leaves it for good on exit from the instrumentation: a
    KeyboardInterrupt skips the ``always_call`` hooks, and a mode left on torch's stack would
    intercept every later torch call of the process."""
    depth = [0]

    def begin(module: nn.Module, args: Any) -> None:
        if depth[0] == 0:
            if calls.collector.skip_without_grad and not torch.is_grad_enabled():
                calls.skipping = True  # an evaluation call (no_grad, inference_mode): not the step's forward
            else:
                calls.begin_batch()
                if mode is not None:
                    mode.__enter__()
                    calls.mode = mode
        depth[0] += 1

    def end(module: nn.Module, args: Any, output: Any) -> None:
        depth[0] -= 1
        if depth[0] == 0:
            if calls.skipping:
                calls.skipping = False
            elif mode is not None:
                off()

    def off() -> None:
        calls.mode = None
        if calls.suspended:  # not on the stack (a KeyboardInterrupt inside a layer skipped its hook)
            calls.suspended = False
        else:
            mode.__exit__(None, None, None)

    def recompute(key: int, entry: tuple, starting: bool) -> None:
        """A segment re-run inside the backward starts or ends (:mod:`.recompute`): the mode is held while
        its outermost module runs, for its functional calls (no batch starts: the rows are the forward's)."""
        if depth[0]:
            return
        if starting:
            calls.replay.start(key, entry[2], entry[3])
            if mode is not None and calls.replay.owner == key:
                mode.__enter__()
                calls.mode = mode
        elif calls.replay.owner == key:
            calls.replay.stop()
            if mode is not None:
                off()

    def leave() -> None:
        if (depth[0] > 0 or calls.mode is not None) and mode is not None and not calls.skipping:
            off()
        depth[0], calls.skipping = 0, False
        calls.replay.stop()

    return begin, end, leave, recompute
