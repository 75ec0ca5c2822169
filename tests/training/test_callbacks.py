"""The Lightning and Hugging Face callbacks, driven by real (tiny, CPU) trainer runs.

Each library's tests are skipped where it is not installed. The references are what the trainers
themselves computed: the loss each ``training_step`` produced, the number of optimiser steps taken.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from gradcheck_cli.errors import UsageError

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")


def assert_no_hooks(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
    """No module, parameter or optimiser hook is left behind."""
    for name, module in model.named_modules():
        for attr in HOOK_DICTS:
            assert not getattr(module, attr, {}), f"{name or 'root'}.{attr} still holds hooks"
    for name, p in model.named_parameters():
        assert not getattr(p, "_post_accumulate_grad_hooks", None), f"{name} still has a post-accumulate-grad hook"
    if optimizer is not None:
        assert not optimizer._optimizer_step_pre_hooks and not optimizer._optimizer_step_post_hooks


def block(monkeypatch, *libraries: str) -> None:  # noqa: ANN001
    """Make ``import library`` (and its already-imported submodules) fail as if it were not installed, and
    forget the callback modules so that they import again."""
    for library in libraries:
        for name in [m for m in sys.modules if m == library or m.startswith(f"{library}.")] or [library]:
            monkeypatch.setitem(sys.modules, name, None)
    for module in ("gradcheck_cli.training.lightning_callback", "gradcheck_cli.training.hf_callback"):
        monkeypatch.delitem(sys.modules, module, raising=False)


def finding_kinds(report) -> set[str]:  # noqa: ANN001
    return {f.kind for f in report.findings}


# -- import-light front door ------------------------------------------------------------------------

def test_importing_the_callbacks_module_imports_no_training_library():
    code = ("import sys, gradcheck_cli, gradcheck_cli.training, gradcheck_cli.training.callbacks\n"
            "print(sorted(m for m in ('lightning', 'pytorch_lightning', 'transformers', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name, libraries, extra", [
    ("GradcheckCallback", ("lightning", "pytorch_lightning"), "lightning"),
    ("GradcheckTrainerCallback", ("transformers",), "hf"),
])
def test_a_missing_library_is_a_usage_error_naming_the_extra(monkeypatch, name, libraries, extra):
    from gradcheck_cli.training import callbacks

    block(monkeypatch, *libraries)
    with pytest.raises(UsageError) as raised:
        getattr(callbacks, name)
    assert f"pip install 'gradcheck[{extra}]'" in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unknown_attribute_is_an_attribute_error():
    from gradcheck_cli.training import callbacks

    with pytest.raises(AttributeError):
        callbacks.NoSuchCallback  # noqa: B018


# -- Lightning --------------------------------------------------------------------------------------

def _lightning():
    try:
        return pytest.importorskip("lightning.pytorch")
    except pytest.skip.Exception:
        return pytest.importorskip("pytorch_lightning")


def _lightning_module(pl, lr: float, fail_at: int | None = None, callback=None):  # noqa: ANN001
    class Regression(pl.LightningModule):
        """A small ReLU MLP regressed onto a linear target; records the loss of every training_step."""

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
            self.seen: list[float] = []
            self.measured_in_validation: list[bool] = []
            self.norms: list[float] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):  # noqa: ANN001
            if fail_at is not None and len(self.seen) == fail_at:
                raise RuntimeError("boom")
            x, y = batch
            loss = nn.functional.mse_loss(self(x), y)
            self.seen.append(loss.item())
            return loss

        def validation_step(self, batch, batch_idx):  # noqa: ANN001
            if callback is not None:  # the callback's hooks must be off while validation runs
                self.measured_in_validation.append(callback.session.measuring)
            x, y = batch
            return nn.functional.mse_loss(self(x), y)

        def on_before_optimizer_step(self, optimizer):  # noqa: ANN001 - Lightning clips after this hook
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            self.norms.append(torch.nn.utils.get_total_norm(grads).item())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=lr)

    return Regression()


def _regression_data(scale: float = 1.0) -> torch.utils.data.DataLoader:
    g = torch.Generator().manual_seed(1)
    x = scale * torch.randn(64, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def _fit(pl, module, callback, max_steps: int, scale: float = 1.0, **trainer_options):  # noqa: ANN001
    """A real Trainer.fit on CPU with nothing but the callback attached."""
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback], **trainer_options)
    trainer.fit(module, _regression_data(scale))
    return trainer


def test_lightning_run_reports_every_step_and_writes_the_json(tmp_path):
    pl = _lightning()
    from gradcheck_cli.training.callbacks import GradcheckCallback

    module, out = _lightning_module(pl, lr=0.01), tmp_path / "grads.json"
    callback = GradcheckCallback(every=4, output=out)
    trainer = _fit(pl, module, callback, 12)
    report = callback.report
    assert trainer.global_step == 12
    assert report.training.completed == 12
    assert report.training.logged_steps == [0, 4, 8]
    assert report.training.loss == module.seen  # exactly what training_step computed
    assert report.training.optimizer == "SGD" and report.training.lr == pytest.approx(0.01)
    assert {layer.name for layer in report.training.layers} >= {"net.0", "net.1", "net.2"}
    assert json.loads(out.read_text()) == json.loads(report.to_json())
    assert not list(tmp_path.glob(".*.tmp")), "the temp file of the atomic write is left behind"
    assert_no_hooks(module, trainer.optimizers[0])
    assert callback.monitor is None


def test_lightning_diverging_run_is_found_and_stopped_early():
    pl = _lightning()
    from gradcheck_cli.training.callbacks import GradcheckCallback

    module = _lightning_module(pl, lr=2.0)
    callback = GradcheckCallback(every=1, stop_on_failure=True)
    trainer = _fit(pl, module, callback, 40, scale=3.0)
    kinds = finding_kinds(callback.report)
    assert kinds & {"diverging_loss", "nonfinite"}, kinds
    assert trainer.global_step < 40
    assert callback.report.training.completed == trainer.global_step
    assert callback.report.summary.exit_code == 1
    assert_no_hooks(module, trainer.optimizers[0])


def test_lightning_without_stop_on_failure_trains_to_the_end():
    pl = _lightning()
    from gradcheck_cli.training.callbacks import GradcheckCallback

    module = _lightning_module(pl, lr=2.0)
    callback = GradcheckCallback(every=5)
    trainer = _fit(pl, module, callback, 15, scale=3.0)
    assert trainer.global_step == 15
    assert finding_kinds(callback.report) & {"diverging_loss", "nonfinite"}


def test_lightning_gradient_accumulation_logs_optimizer_steps_with_the_mean_loss():
    pl = _lightning()
    from gradcheck_cli.training.callbacks import GradcheckCallback

    module = _lightning_module(pl, lr=0.01)
    callback = GradcheckCallback(every=2)
    trainer = _fit(pl, module, callback, 4, accumulate_grad_batches=2)
    training = callback.report.training
    assert trainer.global_step == 4 and len(module.seen) == 8
    assert training.completed == 4 and training.logged_steps == [0, 2]
    means = [(a + b) / 2 for a, b in zip(module.seen[0::2], module.seen[1::2])]
    assert training.loss == pytest.approx(means, rel=1e-6)


def test_lightning_clipping_reports_the_norm_before_clipping():
    pl = _lightning()
    from gradcheck_cli.training.callbacks import GradcheckCallback

    module = _lightning_module(pl, lr=0.01)
    callback = GradcheckCallback(every=1)
    trainer = _fit(pl, module, callback, 3, scale=3.0, gradient_clip_val=1e-3)
    training = callback.report.training
    assert training.clip_grad_norm == pytest.approx(1e-3)
    assert training.grad_norm == pytest.approx(module.norms, rel=1e-5)  # the module's own pre-clipping reading
    assert min(training.grad_norm) > 1e-2  # far above the clipping norm
    assert_no_hooks(module, trainer.optimizers[0])


def test_lightning_validation_between_steps_is_not_measured():
    pl = _lightning()
    from gradcheck_cli.training.callbacks import GradcheckCallback

    callback = GradcheckCallback(every=2)
    module = _lightning_module(pl, lr=0.01, callback=callback)
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
                         val_check_interval=2, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(module, _regression_data(), _regression_data())
    # validation runs after the 2nd, 4th and 6th step, each time with the hooks armed for a logged next step
    assert module.measured_in_validation == [False, False, False]
    assert callback.report.training.logged_steps == [0, 2, 4]
    assert callback.report.training.loss == module.seen
    assert_no_hooks(module, trainer.optimizers[0])


def test_lightning_exception_keeps_the_steps_so_far_and_removes_the_hooks():
    pl = _lightning()
    from gradcheck_cli.training.callbacks import GradcheckCallback

    module = _lightning_module(pl, lr=0.01, fail_at=5)
    callback = GradcheckCallback(every=1)
    with pytest.raises(RuntimeError, match="boom"):
        _fit(pl, module, callback, 12)
    assert callback.report.training.completed == 5  # what was measured before the failure is kept
    assert callback.report.training.loss == module.seen
    assert_no_hooks(module, module.trainer.optimizers[0])


def test_lightning_falls_back_to_the_standalone_pytorch_lightning(monkeypatch):
    pl = pytest.importorskip("pytorch_lightning")
    block(monkeypatch, "lightning")
    from gradcheck_cli.training.callbacks import GradcheckCallback

    assert issubclass(GradcheckCallback, pl.Callback)
    module, callback = _lightning_module(pl, lr=0.01), GradcheckCallback(every=2)
    trainer = _fit(pl, module, callback, 3)
    assert callback.report.training.loss == module.seen and trainer.global_step == 3
    assert_no_hooks(module, trainer.optimizers[0])


# -- Hugging Face Trainer ---------------------------------------------------------------------------

class _Tokens(torch.utils.data.Dataset):
    """Seeded random token sequences, labels equal to the inputs (causal LM)."""

    def __init__(self, n: int = 64, length: int = 16, vocab: int = 100) -> None:
        self.ids = torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(2))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _hf_run(tmp_path, callback, max_steps: int, lr: float = 1e-3, **arguments):  # noqa: ANN001
    arguments.setdefault("logging_strategy", "no")
    transformers = pytest.importorskip("transformers")

    class RecordingTrainer(transformers.Trainer):
        """Keeps the loss each training_step returned to the loop (the reference) and whether the callback's
        hooks were on during evaluation."""

        seen: list[float]
        measured_in_evaluation: list[bool]

        def training_step(self, *args, **kwargs):  # noqa: ANN002, ANN003
            loss = super().training_step(*args, **kwargs)
            self.seen.append(loss.item())
            return loss

        def prediction_step(self, *args, **kwargs):  # noqa: ANN002, ANN003
            self.measured_in_evaluation.append(callback.session.measuring)
            return super().prediction_step(*args, **kwargs)

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100,
                                                                 n_positions=32))
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=max_steps, report_to=[],
                                          use_cpu=True, save_strategy="no",
                                          per_device_train_batch_size=8, learning_rate=lr, lr_scheduler_type="constant",
                                          dataloader_num_workers=0, disable_tqdm=True, **arguments)
    trainer = RecordingTrainer(model=model, args=args, train_dataset=_Tokens(), eval_dataset=_Tokens(8),
                               callbacks=[callback])
    trainer.seen, trainer.measured_in_evaluation = [], []
    trainer.train()
    return trainer, model


def test_hf_run_reports_every_step_and_writes_the_json(tmp_path):
    pytest.importorskip("transformers")
    from gradcheck_cli.training.callbacks import GradcheckTrainerCallback

    out = tmp_path / "grads.json"
    callback = GradcheckTrainerCallback(every=3, output=out)
    trainer, model = _hf_run(tmp_path, callback, max_steps=7)
    training = callback.report.training
    assert trainer.state.global_step == 7
    assert training.completed == 7 and training.logged_steps == [0, 3, 6]
    assert training.loss == trainer.seen  # the loss the Trainer computed, step by step
    assert training.optimizer == "AdamW" and training.lr == pytest.approx(1e-3)
    assert training.clip_grad_norm == pytest.approx(1.0)  # the Trainer's default max_grad_norm
    assert json.loads(out.read_text()) == json.loads(callback.report.to_json())
    assert_no_hooks(model, trainer.optimizer.optimizer)


def test_hf_diverging_run_is_found_and_stopped_early(tmp_path):
    pytest.importorskip("transformers")
    from gradcheck_cli.training.callbacks import GradcheckTrainerCallback

    callback = GradcheckTrainerCallback(every=1, stop_on_failure=True)
    trainer, model = _hf_run(tmp_path, callback, max_steps=30, lr=50.0, max_grad_norm=0.0)
    kinds = finding_kinds(callback.report)
    assert kinds & {"diverging_loss", "nonfinite"}, kinds
    assert trainer.state.global_step < 30
    assert callback.report.training.completed == trainer.state.global_step
    assert_no_hooks(model, trainer.optimizer.optimizer)


def test_hf_gradient_accumulation_logs_optimizer_steps(tmp_path):
    pytest.importorskip("transformers")
    from gradcheck_cli.training.callbacks import GradcheckTrainerCallback

    callback = GradcheckTrainerCallback(every=2)
    trainer, model = _hf_run(tmp_path, callback, max_steps=3, gradient_accumulation_steps=2)
    training = callback.report.training
    assert training.completed == 3 and training.logged_steps == [0, 2]
    assert len(trainer.seen) == 6
    # each micro-batch's value as the Trainer returned it is already scaled for accumulation (divided by the steps,
    # or normalised by the whole batch's token count), so a step's loss is the sum of its micro-batches'
    sums = [a + b for a, b in zip(trainer.seen[0::2], trainer.seen[1::2])]
    assert training.loss == pytest.approx(sums, rel=1e-6)
    assert_no_hooks(model, trainer.optimizer.optimizer)


def test_hf_clipping_reports_the_trainers_own_pre_clipping_norm_and_evaluation_is_not_measured(tmp_path):
    pytest.importorskip("transformers")
    from gradcheck_cli.training.callbacks import GradcheckTrainerCallback

    callback = GradcheckTrainerCallback(every=1)
    trainer, model = _hf_run(tmp_path, callback, max_steps=4, max_grad_norm=1e-3, logging_strategy="steps",
                             logging_steps=1, eval_strategy="steps", eval_steps=2, per_device_eval_batch_size=8)
    training = callback.report.training
    logged = [entry["grad_norm"] for entry in trainer.state.log_history if "grad_norm" in entry]
    assert training.clip_grad_norm == pytest.approx(1e-3)
    assert training.grad_norm == pytest.approx(logged, rel=1e-4)  # the norm the Trainer clipped, as it logs it
    assert min(training.grad_norm) > 1e-2
    assert trainer.measured_in_evaluation == [False, False]  # after steps 2 and 4, with the hooks armed (every=1)
    assert training.loss == trainer.seen
    assert_no_hooks(model, trainer.optimizer.optimizer)
