"""fp16 mixed precision (``torch.amp.GradScaler``): the Monitor divides the loss scale out of the gradient rows,
and a step the scaler skips (inf/NaN in the scaled gradients, routine while it calibrates its scale) is
measured at the next step instead of being judged non-finite. Everything here runs on CPU, where
``GradScaler("cpu")`` scales and skips exactly as on CUDA."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradcheck_cli import Monitor


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))


def _loop(scaler: torch.amp.GradScaler | None, *, tell: bool, autocast: bool = False, steps: int = 12,  # noqa: ANN202
          update_first: bool = True):
    """A hand-written AMP loop: scale, backward, scaler.step, then scaler.update and monitor.step (the documented
    order; ``update_first=False``: the other way round, as Lightning's post-step hook runs)."""
    model = _mlp()
    x = torch.randn(128, 8, generator=torch.Generator().manual_seed(1))
    y = 3 * x[:, :1]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    ran = 0
    with Monitor(model, every=5, scaler=scaler if tell else None) as monitor:
        for _ in range(steps):
            with torch.autocast("cpu", dtype=torch.float16, enabled=autocast):
                loss = nn.functional.mse_loss(model(x).float(), y)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                if update_first:
                    scaler.update()
            monitor.step(loss, optimizer)
            if scaler is not None and not update_first:
                scaler.update()
            optimizer.zero_grad()
            ran += 1
            if monitor.should_stop:
                break
    return monitor.report(), ran


def _gradient_rows(report) -> list[float]:  # noqa: ANN001
    return [layer.grad.output_rms for layer in report.layers if layer.observed]


def test_the_loss_scale_is_divided_out_of_the_gradient_rows() -> None:
    """A GradScaler at 2^16 multiplies every gradient of the backward by 65536: the rows and the series must read
    as the unscaled run's (they read 65536x larger before, and an absolute gradient limit would fire on them)."""
    plain, _ = _loop(None, tell=False)
    scaled, _ = _loop(torch.amp.GradScaler("cpu", init_scale=2.0**16), tell=True)
    assert _gradient_rows(scaled) == pytest.approx(_gradient_rows(plain), rel=1e-5)
    assert scaled.training.logged_steps == plain.training.logged_steps == [0, 5, 10]
    for mine, theirs in zip(scaled.training.layers, plain.training.layers):
        assert mine.grad_rms == pytest.approx(theirs.grad_rms, rel=1e-5)
    assert scaled.training.grad_norm == pytest.approx(plain.training.grad_norm, rel=1e-5)
    untold, _ = _loop(torch.amp.GradScaler("cpu", init_scale=2.0**16), tell=False)
    assert _gradient_rows(untold)[0] == pytest.approx(2.0**16 * _gradient_rows(plain)[0], rel=1e-5)
    assert any("GradScaler loss scale" in note for note in scaled.notes)


@pytest.mark.parametrize("update_first", [True, False])
def test_a_step_the_scaler_skips_is_measured_at_the_next_step(update_first: bool) -> None:
    """fp16 autocast at a scale of 2^24 overflows the first backward (fp16 tops out at 65504): the scaler skips
    that step and backs off to 2^14. Told about the scaler, the Monitor measures step 1 instead and finds
    nothing; not told, it judges the skipped step's inf gradients and stops a healthy run at step 0. Called
    before ``scaler.update()``, the Monitor arms step 1 with the scale that update will set (reading the scale
    then gave 2^24 and took step 1 for skipped too).
    """
    def scaler() -> torch.amp.GradScaler:
        return torch.amp.GradScaler("cpu", init_scale=2.0**24, backoff_factor=2.0**-10)

    untold, ran = _loop(scaler(), tell=False, autocast=True, update_first=update_first)
    assert ran == 1 and {"nonfinite"} <= {f.kind for f in untold.findings}
    told, ran = _loop(scaler(), tell=True, autocast=True, update_first=update_first)
    assert ran == 12 and told.findings == []
    assert told.training.logged_steps == [1, 5, 10]
    assert all(v is not None and 0 < v < 1 for v in _gradient_rows(told))
    assert any("1 logged step(s) skipped by the GradScaler" in note for note in told.notes)


def test_lightning_16_mixed_reads_the_plugins_scaler() -> None:
    """Lightning's "16-mixed" precision plugin scales the loss before ``on_before_backward`` and skips the
    optimiser (and so the post-step hook) on an overflowing step. The callback takes the plugin's scaler:
    the loss series is training_step's own (it read 2^14x larger), and the skipped step is measured later."""
    pl = pytest.importorskip("lightning.pytorch")
    from gradcheck_cli.training.callbacks import GradcheckCallback

    class Regression(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.seen = _mlp(), []

        def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN201
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x).float(), y)
            self.seen.append(loss.item())
            return loss

        def configure_optimizers(self):  # noqa: ANN201
            return torch.optim.SGD(self.parameters(), lr=0.01)

    x = torch.randn(128, 8, generator=torch.Generator().manual_seed(1))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, 3 * x[:, :1]), batch_size=128)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24, backoff_factor=2.0**-10)
    callback, module = GradcheckCallback(every=5, stop_on_failure=True), Regression()
    trainer = pl.Trainer(max_steps=12, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
                         plugins=[pl.plugins.precision.MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    trainer.fit(module, data)
    report = callback.report
    assert report.findings == [] and report.training.logged_steps == [1, 5, 10]
    assert report.training.loss == pytest.approx(module.seen[1:], rel=1e-5)  # the skipped first step left no loss


def test_hf_callback_hands_accelerates_scaler_to_the_monitor() -> None:
    """The Trainer's optimizer is accelerate's wrapper, which holds the GradScaler under fp16 (CPU runs have none,
    so this is checked on the callback itself)."""
    pytest.importorskip("transformers")
    from gradcheck_cli.training.callbacks import GradcheckTrainerCallback

    class Wrapper:  # what accelerate's AcceleratedOptimizer shows: the torch optimiser and the scaler
        def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
            self.optimizer, self.scaler = optimizer, scaler

    class Args:
        max_grad_norm = 0.0

    model, scaler = _mlp(), torch.amp.GradScaler("cpu", init_scale=2.0**16)
    callback = GradcheckTrainerCallback(every=5)
    callback.on_train_begin(Args(), None, None, model=model, optimizer=Wrapper(torch.optim.SGD(model.parameters()), scaler))
    try:
        assert callback.monitor.scaler is scaler and callback.monitor.loss_scale() == 2.0**16
    finally:
        callback.close()
