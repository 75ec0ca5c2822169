"""One walk of a model's module tree, for everything a run reads from it.

The engine's state keeping (train/eval flags, gradients, buffers), the instrumentation (which modules
are layers, which parameter an operand is) and the parameter norms (tied names) each walked the tree
with ``named_modules`` / ``named_parameters`` / ``buffers``: five walks a call, each a recursion of
generators whose every yield resumes one frame per level of depth (T5's 191 modules: 0.16-0.25 ms a
walk). :func:`module_tree` walks it once, iteratively, and gives the same names in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

_ROOT_WALKS = tuple((name, getattr(nn.Module, name)) for name in (
    "named_modules", "named_parameters", "named_buffers", "parameters", "buffers", "modules"))
"""What the root's own walks call; below the root, torch's walks recurse through ``named_modules`` only."""


@dataclass(frozen=True)
class ModuleTree:
    """What ``named_modules()``, ``named_parameters()``, ``named_parameters(remove_duplicate=False)`` and
    ``buffers()`` of the root give, in their order."""

    modules: list[tuple[str, nn.Module]]
    """Each module once, under its first name (pre-order, as ``named_modules``)."""
    params: dict[str, nn.Parameter]
    """Each parameter once, under its first name (as ``named_parameters``)."""
    aliases: dict[int, list[str]]
    """id(parameter) -> every name it has (tied weights have several; as ``remove_duplicate=False``)."""
    buffers: list[torch.Tensor]
    """Each buffer once (as ``buffers()``)."""
    scripted: list[str] = field(default_factory=list)
    """The outermost ``torch.jit.script`` submodules below the root: they run as TorchScript, which calls
    no module hooks, so the layers inside them are not observed (their parameters are)."""


_NAMED_MODULES = nn.Module.named_modules
_SCRIPT_MODULE = torch.jit.ScriptModule


def module_tree(model: nn.Module) -> ModuleTree:
    """The tree of ``model`` from one iterative walk; torch's own walks where a module overrides them
    (a wrapper's ``named_parameters`` that renames) or a module is reached twice (a shared submodule:
    its tied names need torch's walk without de-duplication)."""
    modules: list[tuple[str, nn.Module]] = []
    params: dict[str, nn.Parameter] = {}
    aliases: dict[int, list[str]] = {}
    buffers: list[torch.Tensor] = []
    seen: set[int] = set()
    seen_buffers: set[int] = set()
    scripted: list[str] = []
    shared = False
    if any(getattr(type(model), name) is not walk for name, walk in _ROOT_WALKS):
        return _torch_tree(model)
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        prefix, module = stack.pop()
        if id(module) in seen:
            shared = True
            continue
        if type(module).named_modules is not _NAMED_MODULES:
            return _torch_tree(model)
        seen.add(id(module))
        modules.append((prefix, module))
        if prefix and isinstance(module, _SCRIPT_MODULE):
            scripted.append(prefix)
        dot = prefix + "." if prefix else ""
        for key, p in module._parameters.items():
            if p is None:
                continue
            names = aliases.get(id(p))
            if names is None:
                aliases[id(p)] = [dot + key]
                params[dot + key] = p
            else:
                names.append(dot + key)
        for b in module._buffers.values():
            if b is not None and id(b) not in seen_buffers:
                seen_buffers.add(id(b))
                buffers.append(b)
        children = [(dot + key, child) for key, child in module._modules.items() if child is not None]
        stack.extend(reversed(children))
    return ModuleTree(modules, params, _all_names(model) if shared else aliases, buffers, _outermost(scripted))


def _outermost(names: list[str]) -> list[str]:
    return [name for name in names if not any(name.startswith(other + ".") for other in names)]


def _all_names(model: nn.Module) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return names


def _torch_tree(model: nn.Module) -> ModuleTree:
    modules = list(model.named_modules())
    scripted = [name for name, module in modules if name and isinstance(module, _SCRIPT_MODULE)]
    return ModuleTree(modules, dict(model.named_parameters()), _all_names(model), list(model.buffers()),
                      _outermost(scripted))
