"""Which observed layers lie on the model's main path, and which sit on branches that merge back.

Read from the autograd graph of the first batch (every front end runs PyTorch ops, so eager modules,
torch.export graphs, TorchScript and the ONNX interpreter all have one). The graph runs from the loss
back to the inputs; a node *dominates* another when every backward path from the loss to it passes
through the first. For each *source* (an observed layer with no observed layer upstream: the first
layer, an embedding, each stack's own input), the observed layers that dominate it form its **main
path**: every signal between that source and the loss crosses each of them, so trends along it are
trends across depth. Every other observed layer is on a **branch** -- a residual branch, attention
q/k/v, a gate, a LayerScale-scaled block -- whose signal merges back by addition; it *joins* the main
path at its nearest dominator that is on one. An encoder and a decoder are two sources with two paths.

Dominators are computed with the iterative algorithm of Cooper, Harvey and Kennedy ("A Simple, Fast
Dominance Algorithm", 2001) over the graph's reverse postorder; nothing here touches tensor data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Topology:
    """Main paths and branch membership, by layer row index."""

    paths: list[list[int]] = field(default_factory=list)
    """Each source's main path: observed rows in forward order (the source first)."""
    joins: dict[int, int | None] = field(default_factory=dict)
    """Branch row -> the main-path row where its signal rejoins (None: only at the loss)."""

    def on_path(self, index: int) -> bool:
        return any(index in path for path in self.paths)

    @property
    def known(self) -> bool:
        return bool(self.paths)


def _children(node: Any) -> list[Any]:
    """The nodes a backward node hands gradients to, leaving out parameter leaves (AccumulateGrad)."""
    out = []
    for child, _ in getattr(node, "next_functions", ()):
        if child is not None and type(child).__name__ != "AccumulateGrad":
            out.append(child)
    return out


def _postorder(root: Any) -> tuple[list[Any], dict[int, list[int]]]:
    """Nodes reachable from ``root`` in postorder (children before parents), iteratively, and each
    node's children ids (read once: ``next_functions`` builds a fresh tuple on every access)."""
    order: list[Any] = []
    children: dict[int, list[int]] = {}
    seen = {id(root)}
    first = _children(root)
    children[id(root)] = [id(c) for c in first]
    stack = [(root, iter(first))]
    while stack:
        node, pending = stack[-1]
        child = next(pending, None)
        if child is None:
            stack.pop()
            order.append(node)
        elif id(child) not in seen:
            seen.add(id(child))
            kids = _children(child)
            children[id(child)] = [id(c) for c in kids]
            stack.append((child, iter(kids)))
    return order, children


def dominators(root: Any) -> tuple[dict[int, int], dict[int, list[int]], list[int]]:
    """(immediate dominator of every node id, children ids per node id, node ids in postorder)."""
    post, children = _postorder(root)
    number = {id(node): i for i, node in enumerate(post)}
    parents: dict[int, list[int]] = {key: [] for key in number}
    for key, kids in children.items():
        for kid in kids:
            parents[kid].append(key)
    root_id = id(root)
    idom = {root_id: root_id}
    changed = True
    reverse = [id(node) for node in reversed(post)]
    while changed:
        changed = False
        for key in reverse:
            if key == root_id:
                continue
            done = [p for p in parents[key] if p in idom]
            if not done:
                continue
            new = done[0]
            for p in done[1:]:
                new = _intersect(p, new, idom, number)
            if idom.get(key) != new:
                idom[key] = new
                changed = True
    return idom, children, [id(node) for node in post]


def _intersect(a: int, b: int, idom: dict[int, int], number: dict[int, int]) -> int:
    while a != b:
        while number[a] < number[b]:
            a = idom[a]
        while number[b] < number[a]:
            b = idom[b]
    return a


def analyse(root: Any, nodes: Mapping[int, Any]) -> Topology:
    """Main paths and branches of the observed rows ``nodes`` (row index -> the autograd node of its
    output) in the graph below ``root`` (the loss's node). Rows the loss does not reach are left out."""
    if root is None or not nodes:
        return Topology()
    idom, children, post = dominators(root)
    row_of = {id(node): index for index, node in nodes.items() if id(node) in idom}
    if not row_of:
        return Topology()
    # an observed node is a source when no observed node lies upstream of it (children are upstream)
    upstream_observed: dict[int, bool] = {}
    for key in post:  # children first
        upstream_observed[key] = any(kid in row_of or upstream_observed[kid] for kid in children[key])
    sources = sorted(row_of[key] for key in row_of if not upstream_observed[key])
    paths: list[list[int]] = []
    for source in sources:
        path, key = [], id(nodes[source])
        while True:
            if key in row_of:
                path.append(row_of[key])
            if idom[key] == key:
                break
            key = idom[key]
        if path not in paths:
            paths.append(path)
    on_path = {index for path in paths for index in path}
    joins: dict[int, int | None] = {}
    for key, index in row_of.items():
        if index in on_path:
            continue
        joined, node = None, idom[key]
        while True:
            if node in row_of and row_of[node] in on_path:
                joined = row_of[node]
                break
            if idom[node] == node:
                break
            node = idom[node]
        joins[index] = joined
    return Topology(paths, joins)


_INDEX = re.compile(r"(?:(?<=^)|(?<=\.))\d+(?=\.|#|$)")


def role_of(name: str) -> str | None:
    """``h.3.attn.c_attn`` -> ``h.*.attn.c_attn``: the layer's place in a repeated block (None without an index).

    Containers number their children (``nn.Sequential``, ``nn.ModuleList``: ``layers.0``, ``blocks.11``),
    so layers whose names differ only in those numbers play one role in successive blocks.
    """
    role = _INDEX.sub("*", name)
    return role if role != name else None


def roles(names: list[str]) -> dict[str, str]:
    """Name -> role for the layers whose role is shared with at least one other layer."""
    of = {name: role_of(name) for name in names}
    count: dict[str, int] = {}
    for role in of.values():
        if role is not None:
            count[role] = count.get(role, 0) + 1
    return {name: role for name, role in of.items() if role is not None and count[role] > 1}
