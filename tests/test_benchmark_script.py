"""The benchmark script runs end to end (a smoke test: no timing is asserted here -- targets live
in benchmarks/, measured there, never in unit tests)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_writes_a_complete_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--models", "mlp30", "--pairs", "1", "--warmup", "0",
         "--floor", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert set(result["startup_s"]) == {"--help", "--version"}
    assert result["allocator"] in run.stdout.splitlines()[0]  # the header says how the heap was set for the timing
    (row,) = result["rows"]
    assert row["model"] == "mlp30"
    for key in ("bare_ms", "analyze_ms", "time_ratio", "pair_ratio", "floor_ratio", "bare_peak_mb", "analyze_peak_mb",
                "memory_ratio", "passes_cpu_ms", "outside_passes_cpu_ms", "worst_over_median_no_full_gc", "bare_worst_over_median",
                "over_floor_cpu_ratio", "floor_norms_cpu_ratio", "over_floor_norms_cpu_ratio"):
        assert row[key] > 0, key
    low, high = row["over_floor_cpu_interval"]
    assert low <= row["over_floor_cpu_ratio"] <= high
    low, high = row["over_floor_norms_cpu_interval"]
    assert low <= row["over_floor_norms_cpu_ratio"] <= high
    assert row["outside_passes_cpu_ms"] < row["analyze_cpu_ms"]  # the split of the call's CPU time is a split
    assert row["full_collections"] in (0, 1)  # one timed analyze call
    assert "mlp30" in run.stdout and "--help" in run.stdout


def test_train_bench_writes_a_complete_row(tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_bench.py"), "--models", "lstm", "--pairs", "1", "--warmup", "0",
         "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    (row,) = json.loads(out.read_text())["rows"]
    for key in ("bare_ms", "logged_ms", "logged_ratio", "hooks_ratio", "every10_ratio", "memory_ratio"):
        assert row[key] > 0, key


_ROUNDS = """
import resource, sys
sys.path.insert(0, sys.argv[1])
import torch
if sys.argv[2] == "steady":
    import bench
    print(bench.steady_allocator())
def step():  # a backward's worth of 1 MiB gradients, allocated, written and freed
    blocks = [torch.ones(1 << 18) for _ in range(31)]
    del blocks
step(); step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_the_timing_heap_reuses_its_pages() -> None:
    """Pinned, the steps reuse the heap's pages whatever glibc was told before. Left to itself glibc's choice
    depends on the process's history (one fresh process in three faulted its MLP steps in, the others did
    not), so the unpinned side is started in the regime that returns every freed block to the OS (the memory
    probe's settings): there a backward's worth of 1 MiB gradients faults ~7900 pages a step."""
    def faults(mode: str) -> float:
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
        run = subprocess.run([sys.executable, "-c", _ROUNDS, str(ROOT / "benchmarks"), mode],
                             capture_output=True, text=True, timeout=300, check=True, env=env)
        return float(run.stdout.split()[-1])

    assert faults("default") > 1000
    assert faults("steady") < 100


def test_the_median_interval_is_the_order_statistics_interval() -> None:
    """n = 15: ranks 4 and 12 (96.5%), the textbook interval; n = 21: ranks 6 and 16; any order of input."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import median_interval

    assert median_interval([float(v) for v in range(15, 0, -1)]) == (4.0, 12.0)
    assert median_interval([float(v) for v in range(1, 22)]) == (6.0, 16.0)
    assert median_interval([2.0, 1.0, 3.0]) == (1.0, 3.0)  # too few for 95%: the extremes
