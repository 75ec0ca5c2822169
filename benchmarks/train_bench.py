"""Overhead of a measured training step (``analyze --steps``, ``Monitor``) against a bare optimiser step.

    python benchmarks/train_bench.py                         # reference models, table on stdout
    python benchmarks/train_bench.py --models mlp30 --pairs 15 --json results.json
    python benchmarks/train_bench.py --device cuda

One process per model; the steps alternate in every round so drift hits them alike, and each ratio is
the median of the rounds' own ratios:
- ``bare``: zero_grad, forward, random-target MSE, backward, AdamW step;
- ``logged``: the same step as ``analyze --steps --every 1`` takes it (the recorder armed before the
  forward, its record read after the optimiser step: per-layer statistics, |grad W|, |delta W| from the
  optimiser's state, one transfer);
- ``block10``: ten steps as ``--every 10`` runs them (one logged, nine bare) against ten bare steps;
- ``hooks``: the bare step under minimal hand-written hooks gathering the same kind of per-layer numbers
  (per-unit moments and min/max of every leaf output, each output gradient's sum of squares; nothing
  named, merged or kept) -- what any hook-based monitor costs here.
Memory: the peak of one step above what was resident before it, in a child process (see bench.py).
Targets (issue 16): logged <= 1.10x, block10 <= 1.02x, memory <= 1.05x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import (MODELS, _floor_step, _pair_ratio, alternate, machine, memory_ratio, pair_interval,  # noqa: E402
                   peak_memory, allocator_option, set_allocator)

DEFAULT = ["mlp30", "resnet_bn", "gpt2_small", "lstm"]


def _steps(name: str, device: str) -> dict[str, Callable[[], None]]:
    from gradcheck_cli.analysis.loss import compute_loss, pick_output
    from gradcheck_cli.loading import wrap_object
    from gradcheck_cli.training.optim import UpdateMeter
    from gradcheck_cli.training.recorder import StepRecorder

    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    model.to(device).train()
    inputs = tuple(x.to(device) for x in inputs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    meter = UpdateMeter(optimizer)
    recorder = StepRecorder(wrap_object(model))
    counter = [0]

    def once(forward: Callable) -> None:
        optimizer.zero_grad(set_to_none=True)
        compute_loss("random-target", pick_output(forward(*inputs)), None, 0).backward()
        optimizer.step()

    def bare() -> None:
        once(model)

    def logged() -> None:
        forward = recorder.arm()
        meter.armed = True
        once(forward)
        recorder.record(counter[0], meter)
        meter.armed = False
        counter[0] += 1

    def block10() -> None:
        logged()
        for _ in range(9):
            bare()

    def bare10() -> None:
        for _ in range(10):
            bare()

    return {"bare": bare, "logged": logged, "hooks": _floor_step(model, bare), "bare10": bare10, "block10": block10}


def time_ratios(name: str, device: str, pairs: int, warmup: int) -> dict[str, float]:
    cpu: dict[str, list[float]] = {}
    times = alternate(_steps(name, device), device, pairs, warmup, cpu)
    return {
        "bare_ms": statistics.median(times["bare"]) * 1e3,
        "logged_ms": statistics.median(times["logged"]) * 1e3,
        "logged_ratio": _pair_ratio(times["logged"], times["bare"]),
        "hooks_ratio": _pair_ratio(times["hooks"], times["bare"]),
        "every10_ratio": _pair_ratio(times["block10"], times["bare10"]),
        # CPU time of this process: steadier than wall time when other jobs share the machine
        "logged_cpu_ratio": _pair_ratio(cpu["logged"], cpu["bare"]),
        "hooks_cpu_ratio": _pair_ratio(cpu["hooks"], cpu["bare"]),
        "every10_cpu_ratio": _pair_ratio(cpu["block10"], cpu["bare10"]),
        # distribution-free 95% intervals of the paired CPU ratios' medians (see bench.pair_interval)
        "logged_cpu_interval": pair_interval(cpu["logged"], cpu["bare"]),
        "every10_cpu_interval": pair_interval(cpu["block10"], cpu["bare10"]),
    }


def measure_memory(name: str, device: str, repeats: int = 3) -> dict[str, float]:
    steps = _steps(name, device)
    steps["bare"](), steps["logged"]()
    peaks: dict[str, list[float]] = {"bare": [], "logged": []}
    for _ in range(repeats):
        for label in peaks:
            peaks[label].append(peak_memory(steps[label], device)["peak_total"])
    return {"bare_peak_mb": min(peaks["bare"]) / 2**20, "logged_peak_mb": min(peaks["logged"]) / 2**20,
            "memory_ratio": min(peaks["logged"]) / min(peaks["bare"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=DEFAULT, choices=list(MODELS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", type=Path)
    allocator_option(parser)
    parser.add_argument("--memory-probe", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(json.dumps(measure_memory(args.memory_probe, args.device)))
        return
    allocator = set_allocator(args.allocator)
    print(f"machine: {machine(args.device)}; {allocator}")
    print(f"{'model':<12} {'bare ms':>8} {'logged ms':>10} {'logged x':>9} {'hooks x':>8} {'every10 x':>10} "
          f"{'cpu: logged':>12} {'hooks':>6} {'every10':>8} {'memory x':>9}")
    rows = []
    for name in args.models:
        row = {"model": name, **time_ratios(name, args.device, args.pairs, args.warmup)}
        if not args.no_memory:
            row |= memory_ratio(name, args.device, __file__)
        rows.append(row)
        memory = f"{row['memory_ratio']:.3f}" if "memory_ratio" in row else "-"
        print(f"{name:<12} {row['bare_ms']:>8.2f} {row['logged_ms']:>10.2f} {row['logged_ratio']:>9.3f} "
              f"{row['hooks_ratio']:>8.3f} {row['every10_ratio']:>10.3f} {row['logged_cpu_ratio']:>12.3f} "
              f"{row['hooks_cpu_ratio']:>6.3f} {row['every10_cpu_ratio']:>8.3f} {memory:>9}", flush=True)
        (logged_low, logged_high), (every_low, every_high) = row["logged_cpu_interval"], row["every10_cpu_interval"]
        print(f"{'':<12} CPU, 95% intervals of the paired medians: logged [{logged_low:.3f}, {logged_high:.3f}], "
              f"every10 [{every_low:.3f}, {every_high:.3f}]", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(args.device), "allocator": allocator, "rows": rows},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
