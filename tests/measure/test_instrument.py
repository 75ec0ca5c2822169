"""Instrumentation leaves no trace: hooks removed, model state restored; graph front ends name layers well."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.errors import AnalysisError


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 12)
        self.fc2 = nn.Linear(12, 12)
        self.out = nn.Linear(12, 2)
        self.bn = nn.BatchNorm1d(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(x))
        x = torch.tanh(self.bn(self.fc2(x)))
        x = F.leaky_relu(x, 0.1)
        return torch.sigmoid(self.out(x))


def _hook_count(model: nn.Module) -> int:
    """The model's module hooks plus the process-wide ones (the instrumentation registers two of those)."""
    from torch.nn.modules import module as torch_module

    process_wide = len(torch_module._global_forward_hooks) + len(torch_module._global_forward_pre_hooks)
    return process_wide + sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_removed_and_state_restored():
    torch.manual_seed(0)
    model = Functional().eval()
    model.fc1.weight.grad = torch.ones_like(model.fc1.weight)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    params = {k: v.clone() for k, v in model.named_parameters()}
    analyze(model, torch.randn(32, 6), mode="train")
    assert _hook_count(model) == 0
    assert not model.training and not model.bn.training
    assert torch.equal(model.fc1.weight.grad, torch.ones_like(model.fc1.weight))
    assert model.fc2.weight.grad is None
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k  # BatchNorm running stats untouched
    for k, v in model.named_parameters():
        assert torch.equal(v, params[k]), k


def test_hooks_removed_when_the_model_raises():
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            raise RuntimeError("boom")

    model = Broken()
    with pytest.raises(AnalysisError, match="boom"):
        analyze(model, torch.randn(2, 4))
    assert _hook_count(model) == 0


def test_functional_activations_get_rows_named_after_their_module():
    torch.manual_seed(0)
    report = analyze(Functional(), torch.randn(64, 6))
    assert [(l.name, l.kind) for l in report.layers] == [
        ("fc1", "linear"), ("relu", "relu"), ("fc2", "linear"), ("bn", "batchnorm"), ("tanh", "tanh"),
        ("leaky_relu", "leaky_relu"), ("out", "linear"), ("sigmoid", "sigmoid"),
    ]
    advice = {l.name: l.init for l in report.layers if l.init}
    assert advice["fc1"].activation_after == "relu"
    assert advice["fc2"].activation_after == "tanh" and advice["fc2"].normalized_after
    assert advice["out"].activation_after == "sigmoid"


def test_torchscript_and_export_match_module_names_and_numbers():
    torch.manual_seed(0)
    model = Functional()
    x = torch.randn(64, 6)
    eager = analyze(model, x)
    scripted = analyze(torch.jit.script(model), x)
    exported = analyze(torch.export.export(model, (x,)), x)
    for other in (scripted, exported):
        assert [l.name for l in other.layers] == [l.name for l in eager.layers]
        for a, b in zip(other.layers, eager.layers):
            assert a.activation.std == pytest.approx(b.activation.std, rel=1e-5), a.name
            assert a.grad.output_rms == pytest.approx(b.grad.output_rms, rel=1e-5), a.name


def test_module_called_twice_gets_two_rows():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.fc(self.act(self.fc(x))))

    report = analyze(Twice(), torch.randn(8, 4))
    assert [l.name for l in report.layers] == ["fc", "act", "fc#2", "act#2"]
    for name in ("torchscript", "export"):
        model = torch.jit.script(Twice()) if name == "torchscript" else torch.export.export(Twice(), (torch.randn(8, 4),))
        assert [l.name for l in analyze(model, torch.randn(8, 4)).layers] == ["fc", "act", "fc#2", "act#2"], name


def test_torchscript_control_flow_is_observed_inside_blocks():
    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(3):
                x = torch.tanh(self.fc(x))
            return x

    torch.manual_seed(0)
    model, x = Loop(), torch.randn(16, 4)
    report = analyze(torch.jit.script(model), x)
    assert [(l.name, l.kind) for l in report.layers] == [("fc", "linear"), ("tanh", "tanh")]
    # One row per graph node: the three loop iterations are merged into it.
    outputs, h = [], x
    with torch.no_grad():
        for _ in range(3):
            outputs.append(model.fc(h))
            h = torch.tanh(outputs[-1])
    merged = torch.cat(outputs).double()
    assert report.layers[0].activation.std == pytest.approx(merged.std(correction=0).item(), rel=1e-5)
    assert report.layers[0].activation.mean == pytest.approx(merged.mean().item(), rel=1e-5, abs=1e-7)


def test_parameters_used_outside_layers_are_reported_as_unobserved():
    class Pos(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pos = nn.Parameter(torch.randn(4))
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x + self.pos)

    report = analyze(Pos(), torch.randn(8, 4))
    unobserved = [l for l in report.layers if not l.observed]
    assert [l.name for l in unobserved] == ["pos"]
    assert "not observed" in unobserved[0].note
    pos = next(p for p in report.parameters if p.name == "pos")
    assert pos.grad_norm > 0


def test_tied_weights_are_counted_once():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.head = nn.Linear(8, 20, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, t):
            return self.head(self.embed(t))

    report = analyze(Tied(), torch.randint(0, 20, (4, 5)))
    names = [p.name for p in report.parameters]
    assert names == ["embed.weight"]
    assert report.parameters[0].aliases == ["head.weight"]
    assert report.model.parameters == 160


def test_frozen_model_has_no_gradient_path():
    model = nn.Linear(4, 2).requires_grad_(False)
    with pytest.raises(AnalysisError, match="no gradient path"):
        analyze(model, torch.randn(3, 4))


def test_huggingface_style_outputs_use_logits():
    class HF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return {"loss": None, "logits": self.fc(x), "hidden": x}

    report = analyze(HF(), torch.randn(5, 4), target=torch.tensor([0, 1, 2, 0, 1]))
    assert report.run.loss == "cross-entropy"


def test_functional_weight_layers_with_module_parameters_get_rows():
    """``F.linear(x, self.w, self.b)`` (Mamba-style code, fused experts) is a layer: its row carries the
    parameters' gradients and init advice, instead of a 'not observed' parameter row."""

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(16, 8) / 8**0.5)
            self.b = nn.Parameter(torch.zeros(16))
            self.head = nn.Linear(16, 2)

        def forward(self, x):
            return self.head(F.relu(F.linear(x, self.w, self.b)))

    model = Functional()
    report = analyze(model, torch.randn(32, 8))
    row = next(l for l in report.layers if l.type == "F.linear")
    assert row.kind == "linear" and row.init.fan_in == 8 and row.observed
    assert not any(l.kind == "unobserved" for l in report.layers)
    assert row.grad.weight_norm > 0 and row.grad.bias_norm is not None


def test_weight_and_spectral_normed_layers_are_layers_and_count_as_normalised():
    from torch.nn.utils.parametrizations import spectral_norm, weight_norm

    model = nn.Sequential(weight_norm(nn.Conv1d(4, 8, 3)), nn.ReLU(), spectral_norm(nn.Conv1d(8, 8, 3)), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 16, 2))
    report = analyze(model, torch.randn(16, 4, 20))
    convs = [l for l in report.layers if l.type == "ParametrizedConv1d"]
    assert [l.kind for l in convs] == ["conv", "conv"] and all(l.grad.weight_norm > 0 for l in convs)
    assert all(l.init.normalized_after and "reparametrised" in l.init.note for l in convs)
    assert not any(l.kind in ("unobserved", "layernorm") for l in report.layers)  # not the parametrisation modules


def test_an_interrupted_forward_leaves_no_torch_function_mode_behind() -> None:
    """KeyboardInterrupt skips always_call hooks; the instrumentation must still pop its mode."""
    from torch.overrides import _get_current_function_mode_stack

    from gradcheck_cli.measure.collector import StatsCollector
    from gradcheck_cli.measure.instrument.modules import instrument_modules

    class Interrupted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torch.relu(self.fc(x))
            raise KeyboardInterrupt

    before = len(_get_current_function_mode_stack())
    model = Interrupted()
    with pytest.raises(KeyboardInterrupt), instrument_modules(model, StatsCollector()) as forward:
        forward(torch.randn(2, 4))
    assert len(_get_current_function_mode_stack()) == before
    assert _hook_count(model) == 0


class _Raises(nn.Module):  # a leaf: a layer module, inside which the functional mode is off torch's stack
    def __init__(self, error: type[BaseException]) -> None:
        super().__init__()
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise self.error


def test_an_interrupt_inside_a_layer_leaves_no_torch_function_mode_behind() -> None:
    """The mode is suspended while the layer runs; the interrupt skips the layer's hook that would put it back."""
    from torch.overrides import _get_current_function_mode_stack

    from gradcheck_cli.measure.collector import StatsCollector
    from gradcheck_cli.measure.instrument.modules import instrument_modules

    model = nn.Sequential(nn.Linear(4, 4), _Raises(KeyboardInterrupt))
    before = len(_get_current_function_mode_stack())
    with pytest.raises(KeyboardInterrupt), instrument_modules(model, StatsCollector()) as forward:
        forward(torch.randn(2, 4))
    assert len(_get_current_function_mode_stack()) == before
    assert _hook_count(model) == 0


def test_modules_outside_the_model_are_not_observed() -> None:
    """The hooks are process-wide: a module the forward calls that is not part of the model (a frozen
    helper kept out of its tree), and a model run beside it, get no rows; the model's own layers do."""
    from gradcheck_cli.measure.collector import StatsCollector
    from gradcheck_cli.measure.instrument.modules import instrument_modules

    outside = nn.Linear(4, 4)

    class UsesAHelper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) + outside(x).detach()

    collector = StatsCollector()
    with instrument_modules(UsesAHelper(), collector) as forward:
        forward(torch.randn(2, 4))
        nn.Sequential(nn.Linear(4, 4), nn.ReLU())(torch.randn(2, 4))  # another model, run meanwhile
    assert [info.name for info in collector.layers] == ["fc"]


def test_a_layer_is_observed_as_its_forward_returned_before_the_users_hooks() -> None:
    """The process-wide hooks run before a module's own: a user hook that replaces an output does not
    change what the layer's row measures (here: a ReLU whose output a hook zeroes is still alive)."""
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    handle = model[1].register_forward_hook(lambda module, args, out: torch.zeros_like(out))
    try:
        report = analyze(model, torch.randn(64, 8))
    finally:
        handle.remove()
    relu = next(layer for layer in report.layers if layer.kind == "relu")
    assert relu.activation.dead_ratio < 0.5


def test_the_mode_comes_back_after_a_layer_that_raised() -> None:
    """A layer's error caught by its parent: the functional call after it still gets its row."""
    from torch.overrides import _get_current_function_mode_stack

    from gradcheck_cli.measure.collector import StatsCollector
    from gradcheck_cli.measure.instrument.modules import instrument_modules

    class Tolerant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.flaky, self.fc = _Raises(ValueError), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            try:
                self.flaky(x)
            except ValueError:
                pass
            return torch.relu(self.fc(x))

    collector = StatsCollector()
    before = len(_get_current_function_mode_stack())
    with instrument_modules(Tolerant(), collector) as forward:
        forward(torch.randn(2, 4))
        assert len(_get_current_function_mode_stack()) == before
    assert [(info.name, info.kind) for info in collector.layers] == [("fc", "linear"), ("relu", "relu")]


def test_a_layer_keeps_a_mode_of_its_own() -> None:
    """A mode the model pushes inside a layer sits above the instrumentation's: it sees the layer's calls."""
    from torch.overrides import TorchFunctionMode

    from gradcheck_cli.measure.collector import StatsCollector
    from gradcheck_cli.measure.instrument.modules import instrument_modules

    seen: list[str] = []

    class Recording(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            seen.append(getattr(func, "__name__", ""))
            return func(*args, **(kwargs or {}))

    class Traced(nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with Recording():
                return super().forward(x)

    collector = StatsCollector()
    with instrument_modules(nn.Sequential(Traced(4, 4), nn.ReLU()), collector) as forward:
        out = forward(torch.randn(2, 4))
    assert "linear" in seen and out.shape == (2, 4)
    assert [info.kind for info in collector.layers][1:] == ["relu"]


class _Block(nn.Module):
    """One activation module called twice and a functional activation called twice (torchvision's
    BasicBlock reuses its ReLU; MoE experts and Mamba's mixer call one function twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(32, 32), nn.Linear(32, 32), nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(self.act(self.fc1(x)))
        return torch.sigmoid(self.act(self.fc2(h)) * 3.0)


class _Checkpointed(nn.Module):
    """Three blocks, the first called twice (a shared block), each call optionally under activation
    checkpointing, which re-runs the block inside the backward."""

    def __init__(self, mode: str | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_Block() for _ in range(3))
        self.head = nn.Linear(32, 4)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch.utils.checkpoint import checkpoint

        for block in [self.blocks[0], self.blocks[1], self.blocks[0], self.blocks[2]]:
            x = block(x) if self.mode is None else checkpoint(block, x, use_reentrant=self.mode == "reentrant")
        return self.head(x)


@pytest.mark.parametrize("mode", ["reentrant", "non-reentrant"])
def test_activation_checkpointing_gives_the_plain_rows_and_gradients(mode: str) -> None:
    """A re-run of a segment inside the backward adds no rows (it added `fc#2`-style duplicates), and
    under reentrant checkpointing, whose forward runs without gradients, the layers' and the functional
    activations' gradients come from the recomputation (they were all missing); a shared block's
    recomputations, and a module or a function called twice within a segment, map back call by call
    (a mapping by name from either end swaps their gradients)."""
    import warnings

    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))

    def rows(checkpointing: str | None) -> list[tuple]:
        torch.manual_seed(0)
        model = _Checkpointed(checkpointing)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reentrant checkpointing warns when no input requires grad
            report = analyze(model, x.clone().requires_grad_(checkpointing == "reentrant"))
        return [(l.name, l.activation.std if l.activation else None, l.grad.output_rms) for l in report.layers]

    plain, checkpointed = rows(None), rows(mode)
    assert [r[0] for r in checkpointed] == [r[0] for r in plain]
    names = [r[0] for r in plain]
    assert {"blocks.0.fc1#2", "blocks.1.act#2", "blocks.1.sigmoid#2", "blocks.0.sigmoid#4"} <= set(names)
    for (name, std, grad), (_, std_c, grad_c) in zip(plain, checkpointed):
        assert std_c == pytest.approx(std, rel=1e-6), name
        assert grad is not None and grad_c == pytest.approx(grad, rel=1e-5), name


def test_a_scripted_submodule_is_reported_not_observed() -> None:
    """An eager model holding a ``torch.jit.script``'d block: the analysis crashed ("'OrderedModuleDict'
    object has no attribute 'get'"); TorchScript calls no module hooks, so the block's layers get
    not-observed rows with their parameters, the rest is observed, and a note says why and what to do."""
    import warnings

    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.script is deprecated
                self.inner = torch.jit.script(nn.Sequential(nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 32)))
            self.head = nn.Linear(32, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.inner(x)))

    torch.manual_seed(0)
    report = analyze(Mixed(), torch.randn(16, 32))
    assert [(l.name, l.observed) for l in report.layers] == [("relu", True), ("head", True), ("inner.0", False),
                                                            ("inner.2", False)]
    assert all(p.grad_norm > 0 for p in report.parameters)
    assert any(note.startswith("inner: torch.jit.script submodule") for note in report.notes)


def test_a_pruned_layer_keeps_its_weight_columns() -> None:
    """``torch.nn.utils.prune`` replaces a layer's ``weight`` parameter by ``weight_orig`` and a mask: the
    row lost its weight-gradient columns and its init advice judged nothing. The row now reads
    ``weight_orig`` for the weight role (its gradient is the masked one autograd gives it) and says why its
    init is not judged (its stored values are not the weights it computes with)."""
    import torch.nn.utils.prune as prune

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4))
    prune.l1_unstructured(model[2], "weight", amount=0.5)
    report = analyze(model, torch.randn(32, 64))
    layer = next(l for l in report.layers if l.name == "2")
    orig = next(p for p in report.parameters if p.name == "2.weight_orig")
    assert orig.layer == "2" and layer.grad.weight_norm == orig.grad_norm > 0
    assert layer.init is None and "pruned" in layer.note
    assert next(l for l in report.layers if l.name == "0").init is not None  # the unpruned layers as before


def test_a_scripted_model_is_probed_once_and_not_kept_alive(monkeypatch):
    """The probed copy of a ScriptModule's forward is built on its first analysis only (the probes find their
    rows at run time), gives the same report every time, and is dropped with the module."""
    import gc
    import weakref

    from gradcheck_cli.measure.instrument import torchscript

    torch.manual_seed(0)
    scripted = torch.jit.script(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)))
    x = torch.randn(32, 8)
    planned = []
    real = torchscript.plan_graph
    monkeypatch.setattr(torchscript, "plan_graph", lambda *a: (planned.append(1), real(*a))[1])
    first, second = analyze(scripted, x), analyze(scripted, x)
    assert len(planned) == 1
    assert second.to_json() == first.to_json() and [l.kind for l in first.layers] == ["linear", "relu", "linear"]
    alive = weakref.ref(scripted)
    del scripted
    gc.collect()
    assert alive() is None
