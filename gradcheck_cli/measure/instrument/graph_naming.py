"""Naming graph nodes after the module tree they came from, shared by the FX and TorchScript front ends.

A node produced by a layer module's own op (``aten.linear`` inside ``encoder.fc``, a Linear)
is named after the module (``encoder.fc``); an op called as a function inside a bigger module
(``torch.sigmoid`` in ``Net.forward``) is named ``<module>.<op>``. Repeated names get ``#2``,
``#3``... in execution order, so a module called twice yields two rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gradcheck_cli.layers import NORM_KINDS, WEIGHT_KINDS, LayerInfo, module_kind, op_base_name

if TYPE_CHECKING:
    from gradcheck_cli.measure.collector import StatsCollector


class GraphNamer:
    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def name(self, op_name: str, op_kind: str, module_path: str, module_type: str, own: bool | None = None) -> str:
        if own is None:
            own = module_kind(module_type) == op_kind
        if module_path and own:
            base = module_path
        else:
            op = op_base_name(op_name).strip("_")
            base = f"{module_path}.{op}" if module_path else op
        count = self._seen.get(base, 0) + 1
        self._seen[base] = count
        return base if count == 1 else f"{base}#{count}"


@dataclass(frozen=True)
class NodeSpec:
    """A graph node chosen for observation, before it has run."""

    op_name: str
    kind: str
    module_path: str
    module_type: str
    params: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, float] = field(default_factory=dict)
    own: bool | None = None
    """Whether the op is its module's own (named after the module); None: decide from module_type."""
    op_label: str | None = None
    """Type shown for an op that is not its module's own (default ``aten.<op>``)."""


class LazyRows:
    """Report rows for graph probes, created when a probe first fires.

    So rows come in execution order, and a node that never runs (the untaken branch of an
    ``if``) gets no row; a node inside a loop keeps one row that merges its iterations.
    """

    def __init__(self, collector: StatsCollector, specs: list[NodeSpec]) -> None:
        self.collector = collector
        self.specs = specs
        self.rows: dict[int, LayerInfo] = {}
        self.namer = GraphNamer()

    def observe(self, index: int, tensor: Any) -> None:
        info = self.rows.get(index)
        if info is None:
            spec = self.specs[index]
            own = module_kind(spec.module_type) == spec.kind if spec.own is None else spec.own
            info = self.collector.add_layer(
                self.namer.name(spec.op_name, spec.kind, spec.module_path, spec.module_type, own=own),
                spec.kind,
                spec.module_type if own else (spec.op_label or f"aten.{op_base_name(spec.op_name)}"),
                params=dict(spec.params),
                attrs=dict(spec.attrs),
            )
            self.rows[index] = info
        self.collector.observe(info, tensor)


def parse_torchscript_hierarchy(text: str) -> tuple[str, str]:
    """``b1(Block).act(ReLU).UNKNOWN_INSTANCE(UNKNOWN_TYPE)`` -> (``b1.act``, ``ReLU``).

    An empty first instance is the root module; ``SELF(...)`` is a method call on the same module.
    """
    path, type_name = [], ""
    for instance, kind in re.findall(r"([^.()]*)\(([^()]*)\)", text):
        if instance.startswith("UNKNOWN_INSTANCE"):
            break
        if not instance or instance == "SELF":
            continue
        path.append(instance)
        type_name = kind
    return ".".join(path), type_name


def param_roles(kind: str, names: list[str], op_name: str | None = None) -> dict[str, str]:
    """Graph op parameter inputs -> roles (``weight``, ``bias``), from how each is used, not from the
    order the op lists them in: a parameter named ``....weight``/``....bias`` plays that role (so
    ``addmm(bias, x, W)`` of transformers' Conv1D is not read backwards); otherwise the operands of a
    weight/norm op are weight then bias, except ``addmm``, whose first operand is the bias."""
    if kind in WEIGHT_KINDS | NORM_KINDS | {"embedding"}:
        suffixes = [name.rsplit(".", 1)[-1] for name in names]
        if names and "weight" in suffixes and set(suffixes) <= {"weight", "bias"} and len(set(suffixes)) == len(names):
            return dict(zip(suffixes, names))
        if op_name is not None and op_base_name(op_name) == "addmm":
            names = names[::-1]
    roles: dict[str, str] = {}
    for position, name in enumerate(names):
        if kind in WEIGHT_KINDS | NORM_KINDS | {"embedding"} and position < 2:
            roles[("weight", "bias")[position]] = name
        else:
            roles[name.rsplit(".", 1)[-1]] = name
    return roles


def decomposed_norms(entries: list[tuple[str, str | None, list[str]]], observed: set[str]) -> dict[int, tuple[str, str, str, list[str]]]:
    """Normalisation modules that an export decomposed into plumbing ops (``LlamaRMSNorm`` becomes
    pow, mean, rsqrt, mul in a .pt2 or ONNX graph): position of each one's last op -> (kind, module
    path, module type, parameter names), for modules with no observed op of their own.

    ``entries`` are the unobserved ops in graph order as (innermost module path, its class name,
    parameter inputs). The last op inside the module is its output, so the row says what the module
    returns, and the norm is known to the verdicts (a weight scale before it is normalised away).
    """


    last: dict[str, int] = {}
    found: dict[str, tuple[str, str]] = {}
    params: dict[str, list[str]] = {}
    for position, (path, type_name, names) in enumerate(entries):
        if not path or not type_name or path in observed:
            continue
        kind = module_kind(type_name)
        if kind in NORM_KINDS:
            last[path] = position
            found[path] = (kind, type_name)
            params.setdefault(path, []).extend(n for n in names if n not in params[path])
    return {position: (found[path][0], path, found[path][1], params[path]) for path, position in last.items()}
