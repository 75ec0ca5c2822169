"""An N-process run (gloo, CPU) over a global batch reports what one process reports over that batch.

The processes are started here as torchrun would start them (MASTER_ADDR/PORT, RANK, WORLD_SIZE);
``test_torchrun_cli`` runs the real ``torchrun -m gradcheck_cli``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from dist_helpers import run_ranks  # noqa: E402
from dist_models import run  # noqa: E402

pytestmark = pytest.mark.slow
STATS = ("mean", "std", "signal_std", "min", "max", "zero_fraction", "dead_ratio", "saturation")
GRADS = ("output_rms", "weight_norm", "bias_norm", "weight_ratio")
_ENVIRONMENT = {"threads", "torch", "python", "cuda", "device_name", "world_size", "distributed"}


def _close(a: float | None, b: float | None, scale: float = 0.0) -> bool:
    if a is None or b is None:
        return a is b
    if not (math.isfinite(a) and math.isfinite(b)):
        return a == b
    return abs(a - b) <= 1e-5 * max(abs(a), abs(b)) + 1e-6 * scale


def assert_same_report(single: dict, merged: dict) -> None:
    """Every statistic within 1e-5 relative (a mean that is ~0 within 1e-6 of its std), same findings."""
    assert [l["name"] for l in merged["layers"]] == [l["name"] for l in single["layers"]]
    for one, many in zip(single["layers"], merged["layers"]):
        assert one["shape"] == many["shape"] and one["per_sample"] == many["per_sample"], one["name"]
        if one["activation"] is not None:
            std = one["activation"]["std"] or 0.0
            for key in STATS:
                assert _close(one["activation"][key], many["activation"][key], std), (one["name"], key)
        for key in GRADS:
            assert _close(one["grad"][key], many["grad"][key]), (one["name"], key)
    assert [(f["kind"], f["layer"]) for f in merged["findings"]] == [(f["kind"], f["layer"]) for f in single["findings"]]
    for p, q in zip(single["parameters"], merged["parameters"]):
        assert p["name"] == q["name"] and _close(p["grad_norm"], q["grad_norm"]) and _close(p["weight_norm"], q["weight_norm"])
    differing = {k for k in single["run"] if single["run"][k] != merged["run"][k]} - _ENVIRONMENT
    assert not differing, differing


@pytest.mark.parametrize(("model", "strategy", "loss", "mode"), [
    ("mlp", "ddp", "auto", "train"),             # cross-entropy: each rank's share of the global mean
    ("mlp", "fsdp", "projection", "train"),
    ("blocks", "fsdp", "projection", "train"),   # residual blocks in a ModuleList: one FSDP unit each
    ("bn", "ddp", "auto", "eval"),               # BatchNorm with its running statistics (see the README)
    ("transformer", "fsdp", "auto", "train"),
])
def test_two_processes_report_what_one_process_reports(model: str, strategy: str, loss: str, mode: str,
                                                       tmp_path: Path) -> None:
    single = run(model, loss=loss, mode=mode)
    ranks = run_ranks(2, "dist_models:run", tmp_path, model=model, strategy=strategy, loss=loss, mode=mode)
    assert_same_report(single, ranks[0])
    assert ranks[0] == ranks[1]  # every rank holds the same merged report (rank 0 writes it)
    assert (ranks[0]["run"]["world_size"], ranks[0]["run"]["distributed"]) == (2, strategy)
    assert (single["run"]["world_size"], single["run"]["distributed"]) == (1, "none")


def test_three_processes_with_an_uneven_split_and_several_batches(tmp_path: Path) -> None:
    single = run("mlp", n=25, batch_size=9, batches=3)
    ranks = run_ranks(3, "dist_models:run", tmp_path, model="mlp", strategy="ddp", n=25, batch_size=9, batches=3)
    assert_same_report(single, ranks[0])


@pytest.mark.parametrize(("model", "message"), [
    ("fails", "rank 1: the model's forward pass raised ValueError: rank 1 got a batch it cannot take"),
    ("dies", "another process of the run stopped without a message"),
])
def test_a_failing_rank_ends_every_rank_with_one_error_and_its_code(model: str, message: str, tmp_path: Path) -> None:
    ranks = run_ranks(2, "dist_models:run", tmp_path, model=model, strategy="ddp", expect_exit={1: 9} if model == "dies" else None)
    assert ranks[0]["exit_code"] == 3 and ranks[0]["error"].startswith(message), ranks[0]
    assert ranks[0]["seconds"] < 30  # the closed connection is seen at once, not after the timeout
    if model == "fails":
        assert ranks[1]["exit_code"] == 3 and "rank 1 got a batch" in ranks[1]["error"]


def test_torchrun_cli_writes_one_report_equal_to_the_single_process_one(tmp_path: Path) -> None:
    factory = tmp_path / "m.py"
    factory.write_text("import torch\nfrom torch import nn\n\ndef build():\n    torch.manual_seed(0)\n"
                       "    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))\n")
    single, merged = tmp_path / "one.json", tmp_path / "two.json"
    common = [f"{factory}:build", "-s", "8,16"]
    subprocess.run([sys.executable, "-m", "gradcheck_cli", "analyze", *common, "-q", "-o", str(single)], check=True)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "gradcheck_cli",
                           "analyze", *common, "--distributed", "ddp", "-o", str(merged)], capture_output=True, text=True,
                          timeout=120, env={**__import__("os").environ, "GRADCHECK_DIST_TIMEOUT": "30", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("report written to") == 1  # rank 0 only
    assert_same_report(json.loads(single.read_text()), json.loads(merged.read_text()))


@pytest.mark.parametrize("model", ["mlp", "blocks"])
def test_meta_init_gives_the_report_of_the_normal_build(model: str, tmp_path: Path) -> None:
    single = run(model)
    ranks = run_ranks(2, "dist_models:run", tmp_path, model=model, strategy="fsdp", meta_init=True)
    assert_same_report(single, ranks[0])
    assert any("--meta-init" in note for note in ranks[0]["notes"])


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_meta_init_reads_each_ranks_shard_of_a_weights_file(suffix: str, tmp_path: Path) -> None:
    """Trained-looking weights (not the factory's init) loaded per shard give the report of the whole file."""
    import torch

    from dist_models import Blocks

    model = Blocks()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5).add_(0.01)  # not what the factory would draw
    weights = tmp_path / f"w{suffix}"
    state = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}  # a Lightning-style prefix
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(weights))
    else:
        torch.save(state, weights)
    single = run("blocks", weights=str(weights))
    ranks = run_ranks(2, "dist_models:run", tmp_path, model="blocks", strategy="fsdp", meta_init=True, weights=str(weights))
    assert_same_report(single, ranks[0])
    assert any("read only its shards" in note for note in ranks[0]["notes"])
