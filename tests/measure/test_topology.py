"""The topology's fast single-walk dominator computation (measure/topology.py) against a slow reference built
from the definition -- d dominates n when every path from the loss to n passes through d -- on random graphs
of real autograd nodes, and on real model families."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from torch import nn

from gradcheck_cli.measure.topology import Topology, _children, analyse


def _reachable(root: Any, removed: int | None = None) -> dict[int, Any]:
    """id -> node of every node reachable from ``root`` without passing through the node ``removed``."""
    found, stack = {id(root): root}, [root]
    while stack:
        for child in _children(stack.pop()):
            if id(child) != removed and id(child) not in found:
                found[id(child)] = child
                stack.append(child)
    return found


def _reference(root: Any, nodes: dict[int, Any]) -> Topology:
    """Main paths and joins from dominator sets computed by removing each node in turn (quadratic)."""
    every = _reachable(root)
    dominated_by = {key: {key} for key in every}  # n -> the nodes that dominate it
    for key in every:
        if key != id(root):
            survivors = _reachable(root, removed=key)
            for other in every:
                if other not in survivors:
                    dominated_by[other].add(key)
    dominated_by[id(root)] = {id(root)}
    for key in every:
        dominated_by[key].add(id(root))

    def idom(key: int) -> int:  # the strict dominator that every other strict dominator dominates
        strict = dominated_by[key] - {key}
        return key if not strict else max(strict, key=lambda d: len(dominated_by[d]))

    row_of = {id(node): index for index, node in nodes.items() if id(node) in every}
    if not row_of:
        return Topology()

    def upstream(key: int) -> bool:  # an observed node below this one (children are upstream)
        below = _reachable(every[key])
        return any(other in row_of for other in below if other != key)

    sources = sorted(row_of[key] for key in row_of if not upstream(key))
    paths: list[list[int]] = []
    for source in sources:
        path, key = [], id(nodes[source])
        while True:
            if key in row_of:
                path.append(row_of[key])
            if idom(key) == key:
                break
            key = idom(key)
        if path not in paths:
            paths.append(path)
    on_path = {index for path in paths for index in path}
    joins: dict[int, int | None] = {}
    for key, index in row_of.items():
        if index in on_path:
            continue
        joined, node = None, idom(key)
        while True:
            if node in row_of and row_of[node] in on_path:
                joined = row_of[node]
                break
            if idom(node) == node:
                break
            node = idom(node)
        joins[index] = joined
    return Topology(paths, joins)


def _random_graph(rng: random.Random) -> tuple[Any, dict[int, Any], list[torch.Tensor]]:
    """A random DAG of tensor ops over two leaves: each new tensor combines one or two earlier ones
    (sums make merges, reuse makes branches); the loss sums a few of the last ones."""
    leaves = [torch.randn(3, requires_grad=True) for _ in range(2)]
    values: list[torch.Tensor] = [leaves[0] * 1.0, leaves[1] * 1.0]
    for _ in range(rng.randint(4, 40)):
        a = values[rng.randrange(len(values))]
        op = rng.random()
        if op < 0.4:
            values.append(a + values[rng.randrange(len(values))])
        elif op < 0.7:
            values.append(torch.tanh(a))
        else:
            values.append(a * values[rng.randrange(len(values))])
    tail = values[-rng.randint(1, 3):]
    loss = sum(t.sum() for t in tail)
    observed = rng.sample(range(len(values)), k=rng.randint(1, len(values)))
    return loss.grad_fn, {row: values[i].grad_fn for row, i in enumerate(sorted(observed))}, values


def test_random_graphs_match_the_definition() -> None:
    rng = random.Random(0)
    for _ in range(150):
        root, nodes, keep = _random_graph(rng)
        assert analyse(root, nodes) == _reference(root, nodes)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 16))
                                    for _ in range(4))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def _observed(model: nn.Module, *args: Any, **kwargs: Any) -> tuple[Any, dict[int, Any]]:
    """The loss node and every leaf module's first output node, as the collector records them."""
    nodes: dict[int, Any] = {}

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        tensor = output if isinstance(output, torch.Tensor) else next(
            (t for t in (output.values() if isinstance(output, dict) else output) if isinstance(t, torch.Tensor)), None)
        if tensor is not None and tensor.grad_fn is not None:
            nodes[len(nodes)] = tensor.grad_fn

    handles = [m.register_forward_hook(hook) for m in model.modules() if next(m.children(), None) is None]
    try:
        out = model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    logits = out if isinstance(out, torch.Tensor) else out["logits"] if "logits" in out else out[0]
    return logits.sum().grad_fn, nodes


def test_a_residual_stack_matches_the_definition() -> None:
    torch.manual_seed(0)
    root, nodes = _observed(_Residual(), torch.randn(2, 16))
    topology = analyse(root, nodes)
    assert topology == _reference(root, nodes)
    assert topology.joins  # the blocks are branches: the comparison is not of two empty topologies


@pytest.mark.parametrize("family", ["gpt2", "t5", "bert"])
def test_transformer_families_match_the_definition(family: str) -> None:
    pytest.importorskip("transformers")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "verdicts"))
    import zoo

    row = next(f for f in zoo.families() if f.name == family)
    torch.manual_seed(0)
    model, inputs = row.build(), row.inputs()
    root, nodes = _observed(model, **inputs) if isinstance(inputs, dict) else _observed(model, *inputs)
    topology = analyse(root, nodes)
    assert topology == _reference(root, nodes) and topology.paths
