"""Monitor in a plain hand-written loop: the loop's own losses, logged steps, findings, and no hooks left."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradcheck_cli import Monitor
from gradcheck_cli.errors import UsageError


def _loop(lr: float, steps: int, every: int, **monitor_args):  # noqa: ANN003, ANN202
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    x = torch.randn(128, 8)
    y = x[:, :1] * 3
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    with Monitor(model, every=every, **monitor_args) as monitor:
        for _ in range(steps):
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            monitor.step(loss, optimizer)
            optimizer.zero_grad()
            losses.append(loss.item())
            if monitor.should_stop:
                break
    return model, monitor, losses


def test_monitor_records_the_loops_losses_and_logs_every_kth_step() -> None:
    model, monitor, losses = _loop(0.05, 30, 5)
    report = monitor.report()
    assert report.training.loss == pytest.approx(losses, rel=1e-6)
    assert report.training.logged_steps == [0, 5, 10, 15, 20, 25]
    assert report.training.optimizer == "SGD" and report.training.lr == 0.05
    assert [f for f in report.findings if f.step is not None] == []
    assert {layer.name for layer in report.layers if layer.observed} == {"0", "1", "2"}
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_monitor_stops_a_diverging_loop_at_the_first_failing_logged_step() -> None:
    _, monitor, losses = _loop(5.0, 200, 1)
    assert len(losses) < 200
    kinds = {f.kind for f in monitor.report().findings if f.step is not None}
    assert kinds & {"diverging_loss", "exploding_gradient", "nonfinite"}


def test_report_before_any_step_is_a_usage_error() -> None:
    with Monitor(nn.Linear(2, 2)) as monitor, pytest.raises(UsageError, match="needs at least one"):
        monitor.report()


def test_monitor_watches_a_model_with_lazy_modules_from_its_first_step() -> None:
    """The Monitor arms before the loop's first forward, while lazy modules have no shapes yet (reading a
    parameter's size then raised torch's uninitialised-parameter ValueError); their first call sizes
    them and every step is logged."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.LazyLinear(512), nn.ReLU(), nn.LazyLinear(4))
    monitor = Monitor(model, every=1)
    x, y = torch.randn(32, 300), torch.randn(32, 4)
    optimizer = None
    for _ in range(3):
        loss = nn.functional.mse_loss(model(x), y)
        optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=0.01)
        loss.backward()
        optimizer.step()
        monitor.step(loss, optimizer)
        optimizer.zero_grad()
    report = monitor.report()
    assert report.training.logged_steps == [0, 1, 2]
    assert [layer.name for layer in report.layers if layer.observed] == ["0", "1", "2"]


def test_a_model_compiled_before_the_monitor_is_observed_on_logged_steps_and_compiled_on_the_others() -> None:
    """``torch.compile(model)`` run before the Monitor went on cached graphs that call no module hook: every
    logged step observed nothing (a report of 0 layers, no finding). The instrumented passes now run the
    compiled code's Python (``set_stance("force_eager")``); the steps in between still run the compiled graph."""
    runs = [0]

    def counting_backend(graph, example_inputs):  # noqa: ANN001, ANN202 - torch.compile's backend protocol
        def run(*args):  # noqa: ANN002, ANN202
            runs[0] += 1
            return graph.forward(*args)
        return run

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    compiled = torch.compile(model, backend=counting_backend)
    x = torch.randn(64, 8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def step(monitor=None) -> None:  # noqa: ANN001
        loss = nn.functional.mse_loss(compiled(x), 3 * x[:, :1])
        loss.backward()
        optimizer.step()
        if monitor is not None:
            monitor.step(loss, optimizer)
        optimizer.zero_grad()

    step()
    before = runs[0]
    step()
    per_step = runs[0] - before
    before = runs[0]
    with Monitor(compiled, every=2) as monitor:
        for _ in range(5):  # logged: 0, 2, 4
            step(monitor)
    report = monitor.report()
    assert {layer.name for layer in report.layers if layer.observed} == {"0", "1", "2"}
    assert report.training.logged_steps == [0, 2, 4]
    assert per_step >= 1 and runs[0] - before == 2 * per_step  # steps 1 and 3 ran compiled
    step()
    assert runs[0] - before == 3 * per_step  # and so does everything after


def test_step_after_zero_grad_is_a_usage_error_not_a_gradient_norm_of_zero() -> None:
    """Called after ``zero_grad`` the step has no gradients left: it was recorded as a global norm of 0 with no
    weight ratios, and the report looked like a healthy, quiet run."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    x = torch.randn(64, 8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    with Monitor(model, every=2) as monitor:
        loss = nn.functional.mse_loss(model(x), 3 * x[:, :1])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        with pytest.raises(UsageError, match="after optimizer.zero_grad"):
            monitor.step(loss, optimizer)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert not torch.nn.modules.module._global_forward_hooks


class _Checkpointed(nn.Module):
    """Its middle block runs under reentrant activation checkpointing: a no-grad forward inside a training one."""

    def __init__(self, checkpointed: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first, self.block, self.head = nn.Linear(8, 32), nn.Sequential(nn.Linear(32, 32), nn.ReLU()), nn.Linear(32, 1)
        self.checkpointed = checkpointed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.first(x)
        h = torch.utils.checkpoint.checkpoint(self.block, h, use_reentrant=True) if self.checkpointed else self.block(h)
        return self.head(h)


def _rows_of(report) -> list[tuple]:  # noqa: ANN001
    return [(l.name, l.activation.mean, l.activation.std, l.activation.dead_ratio, l.grad.output_rms)
            for l in report.layers if l.observed]


@pytest.mark.parametrize("checkpointed", [False, True])
def test_an_evaluation_between_steps_is_not_part_of_the_next_logged_step(checkpointed: bool) -> None:
    """A loop that evaluates before training and between steps under no_grad, without Monitor.pause: that forward
    was observed and merged into the next logged step's rows (validation data in its activation statistics). Calls of the model
    with gradients off are now left out -- only the outermost call is asked, so a reentrant checkpoint's no-grad
    segment inside the training forward is still observed."""
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    held_out = 5 * torch.randn(256, 8, generator=torch.Generator().manual_seed(2))

    def run(evaluate: bool):  # noqa: ANN202
        model = _Checkpointed(checkpointed)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        with Monitor(model, every=2) as monitor:
            if evaluate:  # a baseline evaluation before training: the first logged step is armed already
                with torch.no_grad():
                    model(held_out)
            for _ in range(5):
                loss = nn.functional.mse_loss(model(x), 3 * x[:, :1])
                loss.backward()
                optimizer.step()
                monitor.step(loss, optimizer)
                optimizer.zero_grad()
                if evaluate:
                    with torch.no_grad():
                        model(held_out)
        return monitor.report()

    plain, evaluated = run(False), run(True)
    assert len(_rows_of(plain)) == 4  # first, block.0, block.1, head: the checkpointed block observed too
    assert _rows_of(evaluated) == _rows_of(plain)
    for mine, theirs in zip(evaluated.training.layers, plain.training.layers):
        assert mine == theirs
