"""The one-walk module tree gives exactly what torch's own walks give, in their order."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradcheck_cli.measure.tree import module_tree


def _torch_view(model: nn.Module) -> tuple:
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return ([(n, id(m)) for n, m in model.named_modules()], [(n, id(p)) for n, p in model.named_parameters()],
            names, [id(b) for b in model.buffers()])


def _tree_view(model: nn.Module) -> tuple:
    tree = module_tree(model)
    return ([(n, id(m)) for n, m in tree.modules], [(n, id(p)) for n, p in tree.params.items()], tree.aliases,
            [id(b) for b in tree.buffers])


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)) for _ in range(2)])
        self.empty = None  # a None child and a None parameter are skipped
        self.register_parameter("unused", None)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # a tied parameter: two names
        self.register_buffer("shared", self.blocks[0][1].running_mean)  # one buffer under two names


class _Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
        self.b = nn.ModuleDict({"inner": self.a, "own": nn.Linear(3, 3)})  # a submodule reached twice


class _Renames(nn.Module):  # a wrapper whose walk renames (as FSDP1's does): torch's walk is used
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(2, 2)

    def named_parameters(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        for name, p in super().named_parameters(*args, **kwargs):
            yield name.replace("inner.", ""), p


@pytest.mark.parametrize("build", [_Tied, _Shared, _Renames, lambda: nn.Sequential(*[nn.Linear(4, 4) for _ in range(5)]),
                                   lambda: nn.LSTM(3, 5, num_layers=2)], ids=["tied", "shared", "renames", "sequential", "lstm"])
def test_the_tree_matches_torchs_walks(build) -> None:  # noqa: ANN001
    model = build()
    assert _tree_view(model) == _torch_view(model)


def test_a_wrapper_that_renames_keeps_its_names() -> None:
    assert list(module_tree(_Renames()).params) == ["weight", "bias"]


def test_the_tree_matches_torchs_walks_on_a_transformer() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=2)
    model = transformers.T5ForConditionalGeneration(config)  # tied embeddings, shared relative-position modules
    assert _tree_view(model) == _torch_view(model)


def test_scripted_submodules_are_named_outermost_first() -> None:
    """The tree names the outermost torch.jit.script submodules (their layers run without module hooks),
    both in the one walk and in torch's fallback, and walks through them like torch does."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated
        block = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Linear(4, 4))))
    model = nn.ModuleDict({"plain": nn.Linear(4, 4), "block": block})
    assert module_tree(model).scripted == ["block"]
    assert _tree_view(model) == _torch_view(model)
    assert module_tree(_Renames()).scripted == [] and module_tree(nn.Linear(2, 2)).scripted == []
    renaming = _Renames()
    renaming.inner = block
    assert module_tree(renaming).scripted == ["inner"]  # the fallback to torch's walks
