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

import functools
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
        return index in self._on_path

    @functools.cached_property
    def _on_path(self) -> frozenset[int]:  # a row asks once each: a set, not a scan of every path
        return frozenset(index for path in self.paths for index in path)

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


def _graph(root: Any) -> tuple[list[Any], list[list[int]], dict[int, int]]:
    """The nodes reachable from ``root`` in postorder (children before parents, the root last), each
    node's children as postorder numbers, and node id -> number, in one iterative walk.

    The autograd graph is acyclic, so when a node is finished every child of it is finished already and
    has its number: the numbers are assigned, and the children listed by them, at that moment, with no
    second pass over the edges to map node ids to numbers. Each node's children are read once
    (``next_functions`` builds a fresh tuple on every access), and a run of children already seen is
    skipped inside one loop instead of one turn of the outer loop each."""
    number: dict[int, int] = {}
    nodes: list[Any] = []
    kids_of: list[list[int]] = []
    seen = {id(root)}
    first = _children(root)
    stack = [(root, first, iter(first))]
    while stack:
        node, kids, pending = stack[-1]
        for child in pending:
            if id(child) not in seen:
                seen.add(id(child))
                grandchildren = _children(child)
                stack.append((child, grandchildren, iter(grandchildren)))
                break
        else:
            stack.pop()
            number[id(node)] = len(nodes)
            nodes.append(node)
            kids_of.append([number[id(kid)] for kid in kids])
    return nodes, kids_of, number


def dominators(kids_of: list[list[int]]) -> list[int]:
    """The immediate dominator of every node, by postorder number (the root, last, dominates itself).

    The iteration runs on postorder numbers in lists, where comparing two nodes' numbers is comparing
    the ints themselves. A node with one parent is dominated first by that parent, so only the merges are
    iterated: an autograd graph is mostly chains (T5's 847 nodes have 1.08 parents each)."""
    parents: list[list[int]] = [[] for _ in kids_of]
    for i, kids in enumerate(kids_of):
        for kid in kids:
            parents[kid].append(i)
    top = len(kids_of) - 1  # the root, last in postorder
    idom = [-1] * len(kids_of)
    idom[top] = top
    merges = []
    for i in range(top - 1, -1, -1):  # reverse postorder, the root left out
        above = parents[i]
        if len(above) == 1:
            idom[i] = above[0]
        else:
            merges.append(i)
    changed = True
    while changed:
        changed = False
        for i in merges:
            new = -1
            for p in parents[i]:
                if idom[p] != -1:
                    new = p if new == -1 else _intersect(p, new, idom)
            if new != -1 and idom[i] != new:
                idom[i] = new
                changed = True
    return idom


def _intersect(a: int, b: int, idom: list[int]) -> int:
    while a != b:
        while a < b:
            a = idom[a]
        while b < a:
            b = idom[b]
    return a


def analyse(root: Any, nodes: Mapping[int, Any]) -> Topology:
    """Main paths and branches of the observed rows ``nodes`` (row index -> the autograd node of its
    output) in the graph below ``root`` (the loss's node). Rows the loss does not reach are left out."""
    if root is None or not nodes:
        return Topology()
    post, kids_of, number = _graph(root)  # (post keeps the nodes, so their ids stay theirs)
    idom = dominators(kids_of)
    row_of = {number[id(node)]: index for index, node in nodes.items() if id(node) in number}
    if not row_of:
        return Topology()
    # an observed node is a source when no observed node lies upstream of it (children are upstream)
    upstream_observed = [False] * len(post)
    for i, kids in enumerate(kids_of):  # children first
        for kid in kids:
            if upstream_observed[kid] or kid in row_of:
                upstream_observed[i] = True
                break
    sources = sorted(row for i, row in row_of.items() if not upstream_observed[i])
    first_node = {row: i for i, row in row_of.items()}
    paths: list[list[int]] = []
    for source in sources:
        path, i = [], first_node[source]
        while True:
            if i in row_of:
                path.append(row_of[i])
            if idom[i] == i:
                break
            i = idom[i]
        if path not in paths:
            paths.append(path)
    on_path = {index for path in paths for index in path}
    joins: dict[int, int | None] = {}
    for i, index in row_of.items():
        if index in on_path:
            continue
        joined, node = None, idom[i]
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
