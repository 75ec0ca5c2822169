"""Overhead of `gradcheck analyze` against a bare forward + loss + backward, per reference model.

    python benchmarks/bench.py                       # all models, table on stdout
    python benchmarks/bench.py --models mlp30 --pairs 9 --json results.json
    python benchmarks/bench.py --device cuda

Time: in one process, bare and analyze steps alternate (warm-up first, then the median of
``--pairs`` pairs), so drift and thermal effects hit both alike. The analyze step is the whole
public API call (instrumentation, statistics, parameter norms, rules, report), with the same
projection loss the bare step uses. ``--floor`` adds two steps to each round: the bare step
under the cheapest hooks that gather the same kind of numbers (per-unit moments and min/max of
every leaf module's output, each output gradient's sum of squares; nothing named, merged or
reported) -- its ratio is what any hook-based instrumentation costs on the machine at hand, and
issue 19's reference -- and the same hooks plus every parameter's and gradient's norm after the
backward (``torch._foreach_norm``), as hooks that also reported the parameter norms would.
Memory: the peak increase of one step over what was resident just before it, minimum over
alternating repeats, in a child process -- on CPU the RSS high-water mark (VmHWM, reset through
/proc/self/clear_refs) with glibc told to mmap every block above 64 KiB so that the RSS follows
live tensor memory; on CUDA the allocator's peak.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))


def mlp30() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """30-layer width-512 ReLU MLP, batch 64."""
    layers: list[nn.Module] = []
    for _ in range(30):
        layers += [nn.Linear(512, 512), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(512, 10)), (torch.randn(64, 512),)


def resnet_bn() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """ResNet-style CNN with BatchNorm (64 channels, 4 blocks), batch 16 at 64x64."""
    from models import SmallResNet

    return SmallResNet(channels=64, blocks=4), (torch.randn(16, 3, 64, 64),)


def gpt2_small() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A small GPT-2 from transformers.GPT2Config (random weights), batch 2x128."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=4, n_embd=256, n_head=4, vocab_size=8000, n_positions=256)
    return GPT2LMHeadModel(config), (torch.randint(0, 8000, (2, 128)),)


def gpt2_large() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """GPT-2-large-sized (774M parameters), batch 1x128."""
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=36, n_embd=1280, n_head=20)), (torch.randint(0, 50257, (1, 128)),)


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(128, 256, num_layers=2, batch_first=True)
        self.head = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(x)[0])


def lstm() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """2-layer LSTM (hidden 256), batch 16 x 64 steps."""
    return LSTMNet(), (torch.randn(16, 64, 128),)


def tiny60() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """60 Linear(4, 4) layers, batch 2: the layers cost next to nothing, so analyze minus bare is
    gradcheck's fixed cost per call (instrumenting, statistics' Python, finalising, rules, report)."""
    return nn.Sequential(*[nn.Linear(4, 4) for _ in range(60)]), (torch.randn(2, 4),)


MODELS: dict[str, Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...]]]] = {
    "mlp30": mlp30, "resnet_bn": resnet_bn, "gpt2_small": gpt2_small, "lstm": lstm, "gpt2_large": gpt2_large,
    "tiny60": tiny60,
}
def onnx_mlp30() -> tuple[object, tuple[torch.Tensor, ...]]:
    """The 30-layer MLP exported to ONNX and run by gradcheck's interpreter. The bare step runs the
    loaded interpreter module; the analyze step gets the same loaded model (file parsing excluded
    from both), instrumented node by node."""
    import tempfile
    import warnings

    from gradcheck_cli.loading import load_model

    model, inputs = mlp30()
    path = Path(tempfile.mkdtemp()) / "mlp30.onnx"
    with warnings.catch_warnings():  # the legacy exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(model, inputs, str(path), dynamo=False, input_names=["x"])
    return load_model(str(path)), inputs


MODELS["onnx_mlp30"] = onnx_mlp30
DEFAULT = ["mlp30", "resnet_bn", "gpt2_small", "lstm", "onnx_mlp30"]


def _steps(model: nn.Module, inputs: tuple[torch.Tensor, ...], device: str, sample_stats: int | None = None):
    from gradcheck_cli import analyze
    from gradcheck_cli.loading.base import LoadedModel
    from gradcheck_cli.analysis.loss import compute_loss, pick_output

    target = model
    if isinstance(model, LoadedModel):  # ONNX: the interpreter module is what runs
        model = model.module
    model.to(device).train()
    inputs = tuple(x.to(device) for x in inputs)

    def bare(after_backward: Callable[[], None] | None = None) -> None:
        out = pick_output(model(*inputs))
        compute_loss("projection", out, None, 0).backward()
        if after_backward is not None:
            after_backward()
        model.zero_grad(set_to_none=True)

    def instrumented() -> object:
        return analyze(target, inputs, device=device, sample_stats=sample_stats)

    return bare, instrumented


def _floor_step(model: nn.Module, bare: Callable[[], None]) -> Callable[[], None]:
    """The bare step under minimal hand-written hooks (see the module docstring, ``--floor``)."""
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    kept: list[object] = []

    def on_output(module: nn.Module, args: object, out: object) -> None:
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.dim() < 2:
            return
        x = out.detach()
        kept.append(torch.batch_norm_update_stats(x.reshape(-1, x.shape[-1]), None, None, 0.0))
        kept.append(torch.aminmax(x))
        if out.grad_fn is not None:
            slot = out.output_nr
            out.grad_fn.register_prehook(lambda g: kept.append(torch.dot(g[slot].reshape(-1), g[slot].reshape(-1))))

    def step() -> None:
        handles = [m.register_forward_hook(on_output) for m in leaves]
        try:
            bare()
        finally:
            for handle in handles:
                handle.remove()
            kept.clear()

    return step


def _norms_step(model: nn.Module, bare: Callable[..., None]) -> Callable[[], None]:
    """The hand-written hooks plus every parameter's and gradient's L2 norm after the backward, the way
    such code takes them (``torch._foreach_norm``, one transfer): what hooks cost that also report the
    parameter norms ``analyze`` reports (``--floor``; not a target, a second reference)."""
    params = [p for p in model.parameters()]

    def norms() -> None:
        grads = [p.grad for p in params if p.grad is not None]
        torch.stack(torch._foreach_norm([p.detach() for p in params]) + torch._foreach_norm(grads)).tolist()

    return _floor_step(model, lambda: bare(norms))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_ratio(name: str, device: str, pairs: int, warmup: int, sample_stats: int | None = None,
               floor: bool = False) -> dict[str, float]:
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    bare, instrumented = _steps(model, inputs, device, sample_stats)
    steps = {"bare": bare, "analyze": instrumented}
    if floor and isinstance(model, nn.Module):  # the ONNX interpreter has no leaf modules to hook
        steps["floor"] = _floor_step(model, bare)
        steps["floor_norms"] = _norms_step(model, bare)
    cpu: dict[str, list[float]] = {}
    with _FullCollections() as full, _PassTime() as passes:
        times = alternate(steps, device, pairs, warmup, cpu=cpu, full=full, passes=passes)
    bare_s, analyze_s = statistics.median(times["bare"]), statistics.median(times["analyze"])
    # each pair's own ratio: adjacent runs share the machine's state, so on a shared VM whose speed
    # drifts between pairs this is the steadier estimate; the table shows both
    result = {"bare_ms": bare_s * 1e3, "analyze_ms": analyze_s * 1e3, "time_ratio": analyze_s / bare_s,
              "pair_ratio": _pair_ratio(times["analyze"], times["bare"]),
              # CPU time of this process (time.process_time): what other processes' load does not inflate
              "bare_cpu_ms": statistics.median(cpu["bare"]) * 1e3, "analyze_cpu_ms": statistics.median(cpu["analyze"]) * 1e3,
              "cpu_ratio": _pair_ratio(cpu["analyze"], cpu["bare"]),
              "cpu_ratio_interval": pair_interval(cpu["analyze"], cpu["bare"]),
              "worst_over_median": max(times["analyze"]) / analyze_s,
              # the same figure for the bare step: what the machine's own swings give a step without gradcheck
              "bare_worst_over_median": max(times["bare"]) / bare_s,
              # a full collection walks every object of the process (not gradcheck's doing alone): the
              # worst call is also given over the calls without one, and how many had one
              "worst_over_median_no_full_gc": max(t for t, gc_ran in zip(times["analyze"], full.calls["analyze"])
                                                  if not gc_ran) / analyze_s,
              "full_collections": sum(full.calls["analyze"]), "full_collection_ms": full.mean_ms(),
              # CPU time inside the instrumented forward/backward passes vs around them (set-up,
              # finalising, parameter statistics, rules, report): the "fixed cost" is the latter
              "passes_cpu_ms": statistics.median(passes.calls["analyze"]) * 1e3,
              "outside_passes_cpu_ms": statistics.median(c - p for c, p in zip(cpu["analyze"], passes.calls["analyze"])) * 1e3,
              "layers": len(instrumented().layers)}
    if "floor" in times:
        result["floor_ratio"] = _pair_ratio(times["floor"], times["bare"])
        result["floor_cpu_ratio"] = _pair_ratio(cpu["floor"], cpu["bare"])
        result["floor_cpu_ms"] = statistics.median(cpu["floor"]) * 1e3
        # the target's own ratio, paired per round like the others (the table's last column divides medians)
        result["over_floor_cpu_ratio"] = _pair_ratio(cpu["analyze"], cpu["floor"])
        result["over_floor_cpu_interval"] = pair_interval(cpu["analyze"], cpu["floor"])
        result["floor_norms_cpu_ratio"] = _pair_ratio(cpu["floor_norms"], cpu["bare"])
        result["over_floor_norms_cpu_ratio"] = _pair_ratio(cpu["analyze"], cpu["floor_norms"])
        result["over_floor_norms_cpu_interval"] = pair_interval(cpu["analyze"], cpu["floor_norms"])
    return result


def alternate(steps: dict[str, Callable[[], None]], device: str, rounds: int, warmup: int,
              cpu: dict[str, list[float]] | None = None, **per_call: _PerCall) -> dict[str, list[float]]:
    """Seconds of each step in every round; the steps alternate within a round (after ``warmup`` rounds),
    in an order rotated by one each round.
    ``cpu``, when given, receives each step's CPU seconds (``time.process_time``) alike; each of
    ``per_call`` (a :class:`_PerCall`) records its own per-step figure."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    # the debt of imports and model building (a first full collection, owed since start-up) is paid
    # here, before timing, as pyperf does; the collector's settings are left as they are
    gc.collect()
    times: dict[str, list[float]] = {label: [] for label in steps}
    if cpu is not None:
        cpu.update({label: [] for label in steps})
    order = list(steps.items())
    for round_ in range(rounds):
        # each round starts one step later: every step takes every position equally often. In a fixed
        # order, the steps right after train_bench's ten-step blocks ran 8-14% slower than the same
        # steps elsewhere in the round (the MLP's bare step 130 vs 121 ms, its logged step 168 vs
        # 147 ms), which biased every ratio over them: the hand-written hooks measured 0.84x bare
        # because bare came first
        shift = round_ % len(order)
        for label, step in order[shift:] + order[:shift]:
            _sync(device)
            for probe in per_call.values():
                probe.start()
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            _sync(device)
            times[label].append(time.perf_counter() - start)
            if cpu is not None:
                cpu[label].append(time.process_time() - start_cpu)
            for probe in per_call.values():
                probe.stop(label)
    return times


class _PerCall:
    """A figure taken per timed step: ``start()`` before it, ``stop(label)`` after; ``calls[label]`` lists them."""

    def __init__(self) -> None:
        self.calls: dict[str, list] = {}
        self._value: float = 0.0

    def start(self) -> None:
        self._value = 0.0

    def stop(self, label: str) -> None:
        self.calls.setdefault(label, []).append(self._value)

    def __enter__(self) -> _PerCall:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _FullCollections(_PerCall):
    """Whether a full (generation 2) garbage collection ran during each step, and what they cost."""

    def __init__(self) -> None:
        super().__init__()
        self._began = 0.0
        self._spent: list[float] = []
        self._timing = False  # collections between steps (the one before timing) are not a step's

    def start(self) -> None:
        super().start()
        self._timing = True

    def _watch(self, phase: str, info: dict) -> None:
        if info["generation"] != 2 or not self._timing:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self._value = 1.0
            self._spent.append(time.perf_counter() - self._began)

    def mean_ms(self) -> float | None:
        return statistics.mean(self._spent) * 1e3 if self._spent else None

    def stop(self, label: str) -> None:
        self._timing = False
        self.calls.setdefault(label, []).append(bool(self._value))

    def __enter__(self) -> _FullCollections:
        gc.callbacks.append(self._watch)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._watch)


class _PassTime(_PerCall):
    """CPU seconds spent inside gradcheck's instrumented forward/backward passes during each step
    (benchmark-only: wraps ``analysis.engine.forward_backward`` while active)."""

    def __enter__(self) -> _PassTime:
        from gradcheck_cli.analysis import engine

        self._engine, self._original = engine, engine.forward_backward

        def timed(*args: object, **kwargs: object) -> object:
            began = time.process_time()
            try:
                return self._original(*args, **kwargs)
            finally:
                self._value += time.process_time() - began

        engine.forward_backward = timed
        return self

    def __exit__(self, *exc: object) -> None:
        self._engine.forward_backward = self._original


def _pair_ratio(times: list[float], bare: list[float]) -> float:
    return statistics.median(t / b for t, b in zip(times, bare))


def pair_interval(times: list[float], bare: list[float]) -> tuple[float, float]:
    """The 95% interval of :func:`_pair_ratio`'s median (see :func:`median_interval`)."""
    return median_interval([t / b for t, b in zip(times, bare)])


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median of ``values`` (order statistics): the k-th smallest
    and k-th largest, k the largest rank whose binomial(n, 1/2) tail leaves at least ``confidence``
    between them. On a VM whose speed wanders (this one's 512x512 matmul took 3.1-5.7 ms across a
    minute), a ratio's interval says whether it is on the target's side of the line or on it."""
    ordered, n = sorted(values), len(values)
    if n < 6:  # fewer cannot reach 95%: the extremes
        return (ordered[0], ordered[-1]) if ordered else (math.nan, math.nan)
    k = 0
    while 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n <= 1 - confidence:
        k += 1
    return ordered[k - 1] if k else ordered[0], ordered[n - k] if k else ordered[-1]


def startup(runs: int = 7) -> dict[str, float]:
    """Median wall time of ``gradcheck --help`` and ``gradcheck --version`` in fresh processes."""
    command = [shutil.which("gradcheck")] if shutil.which("gradcheck") else [sys.executable, "-m", "gradcheck_cli"]
    result = {}
    for flag in ("--help", "--version"):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([*command, flag], capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        result[flag] = statistics.median(times)
    return result


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    """Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) of this process."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def peak_memory(step: Callable[[], None], device: str) -> dict[str, float]:
    """Peak memory of one step above what was resident just before it (CPU: RSS; CUDA: allocator)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return {"peak_increase": torch.cuda.max_memory_allocated() - base, "peak_total": torch.cuda.max_memory_allocated()}
    base = _status_kb("VmRSS")
    _reset_peak_rss()
    step()
    peak = _status_kb("VmHWM")
    return {"peak_increase": max(peak - base, 1) * 1024, "peak_total": peak * 1024}


def steady_allocator() -> str:
    """Pin glibc's allocator for the timing process: blocks up to 32 MiB come from the heap and freed
    memory stays there (``mallopt``: a fixed mmap threshold, no trimming below 1 GiB), so every step
    reuses pages already mapped.

    By default glibc moves its mmap threshold with each large block freed and hands the heap's free
    top back to the OS past twice that, and which regime a process settles in depends on the order of
    its earlier allocations: in three fresh processes timing the 30-layer MLP, one took 4041 page
    faults a step (its bare step 47 ms against 36-38 ms in the two that took none), swinging every
    ratio of that run with it. Both the bare and the instrumented steps run under the same setting,
    and the memory probe keeps its own (:data:`MALLOC_ENV`, in its child process). Returns what was
    done, for the header line."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return "allocator as is (not glibc)"
    import ctypes

    libc = ctypes.CDLL(None)
    if libc.mallopt(-3, 32 << 20) != 1 or libc.mallopt(-1, 1 << 30) != 1:  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
        return "allocator as is (mallopt refused)"
    return "glibc heap pinned (mmap threshold 32 MiB, no trim)"


def allocator_option(parser: argparse.ArgumentParser) -> None:
    """``--allocator``, shared by the timing scripts (bench, train_bench, peers)."""
    parser.add_argument("--allocator", choices=["steady", "default"], default="steady",
                        help="steady: pin glibc's heap for the timing (see steady_allocator); default: leave it")


def set_allocator(choice: str) -> str:
    """Apply ``--allocator``; what was done, for the header line."""
    return steady_allocator() if choice == "steady" else "allocator as is"


MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
"""glibc: every allocation above 64 KiB is its own mmap, returned to the OS when freed, so the RSS
high-water mark follows live tensor memory instead of the heap's cached free space."""


def memory_ratio(name: str, device: str, script: str = __file__) -> dict[str, float]:
    """Run ``script``'s ``--memory-probe`` (:func:`measure_memory` here) in a child process whose allocator
    returns freed memory at once."""
    env = {**os.environ, **MALLOC_ENV}
    out = subprocess.run([sys.executable, script, "--memory-probe", name, "--device", device],
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_memory(name: str, device: str, repeats: int = 3) -> dict[str, float]:
    """Minimum over a few alternating runs (allocator caches make the first run of each the largest)."""
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    bare, instrumented = _steps(model, inputs, device)
    bare(), instrumented()
    results: dict[str, list[dict[str, float]]] = {"bare": [], "analyze": []}
    for _ in range(repeats):
        for label, step in (("bare", bare), ("analyze", instrumented)):
            results[label].append(peak_memory(step, device))
    bare_peak = min(r["peak_increase"] for r in results["bare"])
    analyze_peak = min(r["peak_increase"] for r in results["analyze"])
    return {
        "bare_peak_mb": bare_peak / 2**20,
        "analyze_peak_mb": analyze_peak / 2**20,
        "memory_ratio": analyze_peak / bare_peak,
        "total_peak_ratio": min(r["peak_total"] for r in results["analyze"]) / min(r["peak_total"] for r in results["bare"]),
    }


def machine(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=DEFAULT, choices=list(MODELS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--sample-stats", type=int, metavar="K", help="time analyze in its cheap mode")
    parser.add_argument("--floor", action="store_true", help="also time minimal hand-written hooks (see above)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--json", type=Path)
    allocator_option(parser)
    parser.add_argument("--memory-probe", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        print(json.dumps(measure_memory(args.memory_probe, args.device)))
        return

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    allocator = set_allocator(args.allocator)
    print(f"machine: {machine(args.device)}; {allocator}")
    cli = startup()
    print(f"gradcheck --help {cli['--help']:.2f} s, --version {cli['--version']:.2f} s (median of 7 fresh processes)")
    print(f"{'model':<12} {'bare ms':>9} {'analyze ms':>11} {'time x':>7} {'pair x':>7} {'floor x':>7} "
          f"{'cpu x':>6} {'floor cpu x':>11} {'analyze/floor cpu':>17} {'bare MB':>8} {'analyze MB':>11} {'mem x':>6}")
    for name in args.models:
        try:
            row = {"model": name, **time_ratio(name, args.device, args.pairs, args.warmup, args.sample_stats, args.floor)}
            if not args.no_memory:
                row |= memory_ratio(name, args.device)
        except ImportError as exc:
            print(f"{name:<12} skipped: {exc}")
            continue
        rows.append(row)
        mem = (f"{row['bare_peak_mb']:>8.1f} {row['analyze_peak_mb']:>11.1f} {row['memory_ratio']:>6.2f}"
               if "memory_ratio" in row else "")
        floor = (f"{row['floor_ratio']:>7.3f} {row['cpu_ratio']:>6.3f} {row['floor_cpu_ratio']:>11.3f} "
                 f"{row['analyze_cpu_ms'] / row['floor_cpu_ms']:>17.3f}" if "floor_ratio" in row
                 else f"{'-':>7} {row['cpu_ratio']:>6.3f} {'-':>11} {'-':>17}")
        print(f"{name:<12} {row['bare_ms']:>9.1f} {row['analyze_ms']:>11.1f} {row['time_ratio']:>7.3f} {row['pair_ratio']:>7.3f} "
              f"{floor} {mem}", flush=True)
        outside, hooks = row["outside_passes_cpu_ms"], row["passes_cpu_ms"] - row["bare_cpu_ms"]
        print(f"{'':<12} CPU per call: {outside:.2f} ms around the passes (set-up, finalising, parameter statistics, "
              f"rules, report: {outside * 1e3 / row['layers']:.0f} us a layer for {row['layers']} layers; issue 19's "
              f"fixed-cost target 2 ms + 10 us a layer = {2 + 0.01 * row['layers']:.2f} ms), {hooks:.2f} ms of hooks "
              f"in the passes over bare; worst of {args.pairs} calls {row['worst_over_median']:.2f}x the median, "
              f"{row['worst_over_median_no_full_gc']:.2f}x without the {row['full_collections']} call(s) in which a full "
              f"garbage collection ran" + (f" ({row['full_collection_ms']:.0f} ms each)" if row["full_collection_ms"] else "")
              + f" (the bare step's worst: {row['bare_worst_over_median']:.2f}x its median)",
              flush=True)
        low, high = row["cpu_ratio_interval"]
        paired = f"{'':<12} CPU, paired per round (median, 95% interval): analyze/bare {row['cpu_ratio']:.3f} [{low:.3f}, {high:.3f}]"
        if "over_floor_cpu_ratio" in row:
            low, high = row["over_floor_cpu_interval"]
            paired += f", analyze/hand-written hooks {row['over_floor_cpu_ratio']:.3f} [{low:.3f}, {high:.3f}]"
            low, high = row["over_floor_norms_cpu_interval"]
            paired += (f", analyze/(hooks + parameter norms) {row['over_floor_norms_cpu_ratio']:.3f} [{low:.3f}, {high:.3f}] "
                       f"(those hooks {row['floor_norms_cpu_ratio']:.3f}x bare)")
        print(paired, flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(args.device), "device": args.device, "startup_s": cli,
                                         "allocator": allocator,
                                         "sample_stats": args.sample_stats, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
