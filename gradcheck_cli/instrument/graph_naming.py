"""Naming graph nodes after the module tree they came from, shared by the FX and TorchScript front ends.

A node produced by a layer module's own op (``aten.linear`` inside ``encoder.fc``, a Linear)
is named after the module (``encoder.fc``); an op called as a function inside a bigger module
(``torch.sigmoid`` in ``Net.forward``) is named ``<module>.<op>``. Repeated names get ``#2``,
``#3``... in execution order, so a module called twice yields two rows.
"""

from __future__ import annotations

from gradcheck_cli.kinds import module_kind, op_base_name


class GraphNamer:
    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def name(self, op_name: str, op_kind: str, module_path: str, module_type: str) -> str:
        if module_path and module_kind(module_type) == op_kind:
            base = module_path
        else:
            op = op_base_name(op_name).strip("_")
            base = f"{module_path}.{op}" if module_path else op
        count = self._seen.get(base, 0) + 1
        self._seen[base] = count
        return base if count == 1 else f"{base}#{count}"


def parse_torchscript_hierarchy(text: str) -> tuple[str, str]:
    """``b1(Block).act(ReLU).UNKNOWN_INSTANCE(UNKNOWN_TYPE)`` -> (``b1.act``, ``ReLU``)."""
    path, type_name = [], ""
    for part in text.split(").") if text else []:
        part = part.rstrip(")")
        instance, _, kind = part.partition("(")
        if instance.startswith("UNKNOWN_INSTANCE") or not instance:
            break
        path.append(instance)
        type_name = kind
    return ".".join(path), type_name


def param_roles(kind: str, names: list[str]) -> dict[str, str]:
    """Graph op parameter inputs -> roles: the first two of a weight/norm op are weight and bias."""
    from gradcheck_cli.kinds import NORM_KINDS, WEIGHT_KINDS

    roles: dict[str, str] = {}
    for position, name in enumerate(names):
        if kind in WEIGHT_KINDS | NORM_KINDS | {"embedding"} and position < 2:
            roles[("weight", "bias")[position]] = name
        else:
            roles[name.rsplit(".", 1)[-1]] = name
    return roles
