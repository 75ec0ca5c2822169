"""What analyze leaves behind in the process: the garbage collector's state, also after a failure."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.errors import AnalysisError


class _Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("no")


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_paused_only_during_the_passes(enabled: bool) -> None:
    seen: list[bool] = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(gc.isenabled())
            return self.fc(x)

    (gc.enable if enabled else gc.disable)()
    try:
        analyze(Probe(), torch.randn(8, 4))
        assert seen == [False] and gc.isenabled() is enabled
        with pytest.raises(AnalysisError):
            analyze(_Raises(), torch.randn(8, 4))
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


def test_lazy_modules_are_materialised_by_a_dry_run() -> None:
    """LazyLinear / LazyBatchNorm1d models before their first call: one forward without gradients in eval
    mode gives them shapes (a ValueError from deep inside torch before), then the analysis runs as usual;
    the dry run moves no BatchNorm statistic, leaves the modes as they were and the caller's RNG alone."""
    model = nn.Sequential(nn.LazyLinear(64), nn.LazyBatchNorm1d(), nn.ReLU(), nn.LazyLinear(4)).train()
    x = torch.randn(32, 20, generator=torch.Generator().manual_seed(0))
    rng = torch.get_rng_state()
    report = analyze(model, x)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(m.training for m in model)
    assert model[0].weight.shape == (64, 20) and model[3].weight.shape == (4, 64)
    assert model[1].num_batches_tracked.item() == 0  # neither the dry run nor the analysis moved it
    assert any("lazy (uninitialised) parameters" in note for note in report.notes)
    assert [layer.name for layer in report.layers if layer.observed] == ["0", "1", "2", "3"]
    assert next(p for p in report.parameters if p.name == "0.weight").grad_norm > 0
    again = analyze(model, x)  # materialised now: no note, the same numbers
    assert not any("lazy" in note for note in again.notes)
    assert [p.weight_norm for p in again.parameters] == [p.weight_norm for p in report.parameters]


def test_a_call_leaves_no_reference_cycle_to_hold_its_tensors() -> None:
    """Everything a call made is freed by reference counting when it returns: a cycle (the hot squares'
    units callback referred to the collector, which referred to them) kept every large gradient of the run
    -- the model's size again -- alive after the call until the next garbage collection, and with the
    collector paused (a timed loop) one more copy per call."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4))
    x = torch.randn(32, 16)
    analyze(model, x)
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        analyze(model, x)
        analyze(model, x, functional=True)
        gc.set_debug(gc.DEBUG_SAVEALL)
        found = gc.collect()
        garbage = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    assert found == 0, garbage[:20]


def _rows(report) -> list[tuple]:  # noqa: ANN001
    return [(l.name, l.activation.std if l.activation else None, l.grad.output_rms, l.grad.weight_norm)
            for l in report.layers]


def test_analyze_under_no_grad_or_inference_mode_runs_its_passes_with_gradients(tmp_path) -> None:  # noqa: ANN001
    """Called from an evaluation loop or a validation hook (``torch.no_grad()``, ``torch.inference_mode()``),
    the passes built no graph and the error blamed frozen parameters. Now the analysis turns gradients on for
    itself -- inputs made under inference mode, and a model file loaded there, included -- gives the same
    report as outside, and leaves the caller's modes as they were."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    x = torch.randn(32, 8)
    reference = _rows(analyze(model, x))
    with torch.no_grad():
        assert _rows(analyze(model, x)) == reference
        assert not torch.is_grad_enabled()
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.trace(model, x), str(path))
    with torch.inference_mode():
        inside = x.clone()  # an inference tensor
        assert _rows(analyze(model, inside)) == reference
        assert _rows(analyze(str(path), inside)) == _rows(analyze(str(path), x))
        assert torch.is_inference_mode_enabled() and inside.is_inference()
    assert torch.is_grad_enabled()


def test_a_model_that_returns_its_own_loss_is_backpropagated_from_it() -> None:
    """A forward that returns a scalar loss: the projection loss multiplied it by one seeded N(0, 1) number
    (1.54 at seed 0), so every gradient row read that much off the model's own training signal. Now the
    scalar is the loss, and the rows equal those of a backward from it written by hand."""
    torch.manual_seed(0)

    class WithLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.mse_loss(self.net(x), x[:, :1])

    model, x = WithLoss(), torch.randn(32, 8)
    seen: dict[str, float] = {}

    def keep(name: str):  # noqa: ANN202
        def hook(module: nn.Module, grad_input: tuple, grad_output: tuple) -> None:
            seen[name] = grad_output[0].pow(2).mean().sqrt().item()
        return hook

    handles = [model.net[i].register_full_backward_hook(keep(f"net.{i}")) for i in range(3)]
    try:
        model(x).backward()
    finally:
        for handle in handles:
            handle.remove()
    model.zero_grad(set_to_none=True)
    report = analyze(model, x)
    rows = {l.name: l.grad.output_rms for l in report.layers}
    assert rows == pytest.approx(seen, rel=1e-5)


def test_a_batch_of_one_through_batchnorm_says_what_to_change() -> None:
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
    with pytest.raises(AnalysisError) as caught:
        analyze(model, torch.randn(1, 8))
    assert "2 or more samples, or --mode eval" in caught.value.hint
    assert analyze(model, torch.randn(1, 8), mode="eval").summary.status in ("ok", "warn")
