"""Per-step overhead of peer tools next to `gradcheck analyze`, as CPU-time ratios to the same bare step.

    python benchmarks/peers.py --models mlp30 resnet_bn gpt2_small --pairs 7 --threads 1 --json peers.json

Why: bench.py says what gradcheck costs; this says what the tools one would otherwise reach for cost on the
same models, measured the same way (bench.py's models, bare/analyze/floor steps, alternation, per-round
ratio), so the numbers read side by side. In one process the steps alternate round by round after
``--warmup`` rounds; each column is the median of the per-round ratios of CPU time (``time.process_time``:
this process only, so a busy machine inflates it less than wall time, and work a tool hands to another
process, e.g. wandb's service, is not counted).

Every peer step is the bare step (forward, gradcheck's projection loss, backward, zero_grad) under the tool:
- anomaly: inside ``torch.autograd.detect_anomaly()`` (check_nan=True, its default).
- fastai: fastai's own ``ActivationStats(with_hist=True).hook`` (per module output: mean, std, share <= 0.05,
  40-bin histc), installed by fastai's ``Hooks`` on the modules ``HookCallback.before_fit`` picks (leaves
  of ``flatten_model`` with parameters; detach=True, cpu=True), stored each batch as ``after_batch`` does.
  No Learner: fastai's training loop is not what is measured.
- torchlens: ``torchlens.trace(model, inputs, capture=CaptureOptions(save_grads=True))``, else its defaults
  (every op's output saved as a copy; torch functions stay wrapped after the first call, which did not
  measurably slow the other steps), the loss of its first output tensor, ``trace.log_backward(loss)``,
  ``trace.cleanup()``. (TorchLens 2.x replaced ``log_forward_pass`` by ``trace``.)
- wandb: ``wandb.watch(model, log="all", log_freq=1)`` in an offline run (no network, files in a temp dir):
  parameter and gradient histograms every step, committed by ``run.log({})`` as a training loop's log does.
- cockpit: ``Cockpit(params, configuration("economy"))`` on a BackPACK-extended model, the backward inside
  ``cockpit(step, info=...)`` with the per-sample projection losses and an SGD optimizer (Alpha needs one;
  never stepped). It can cost 200x, so it alternates with the bare step on its own, ``--cockpit-pairs``
  rounds. BackPACK has no per-sample gradients for GPT-2's Conv1D/LayerNorm: skipped there, so stated.
Tools that attach once (fastai, wandb, cockpit) get their own deep copy of the model, hooks left on as in
training; analyze, anomaly and torchlens are per-call and run on the model itself. A peer that does not
import, or fails on a model, is skipped with a one-line reason.

Reproduce (torch from the local CPU wheel; torchvision does not import beside it, so packages that pull it
in go in with --no-deps: fastai and backpack import it only in parts not used here):
    python3 -m venv /tmp/peers-venv && V=/tmp/peers-venv/bin
    $V/pip install torch==2.13.0 && $V/pip install -e /work/main transformers==5.24.0
    $V/pip install torchlens==2.36.1 wandb==0.31.0 scikit-learn==1.9.1 matplotlib pandas scipy seaborn \\
        "setuptools<81" "plum-dispatch==2.9.0"
    $V/pip install --no-deps fastai==2.8.12 fastcore==2.2.41 fasttransform==0.0.5 fastprogress==1.0.5 \\
        fastdownload==0.0.8 cockpit-for-pytorch==1.0.2 backpack-for-pytorch==1.7.1 unfoldNd==0.2.3 \\
        einops==0.8.2 json-tricks==3.17.3
    $V/python benchmarks/peers.py --models mlp30 resnet_bn gpt2_small --pairs 7 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import json
import os
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable
from typing import Any
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import MODELS, _floor_step, _pair_ratio, _steps, alternate, machine, allocator_option, set_allocator  # noqa: E402

Step = Callable[[], None]
Inputs = tuple[torch.Tensor, ...]
PEERS = ("anomaly", "fastai", "torchlens", "wandb", "cockpit")
IMPORTS = {"fastai": "fastai.callback.hook", "torchlens": "torchlens", "wandb": "wandb", "cockpit": "cockpit"}
DISTRIBUTIONS = {"base": ("torch", "transformers", "gradcheck"), "fastai": ("fastai", "fastcore"),
                 "torchlens": ("torchlens",), "wandb": ("wandb",), "cockpit": ("cockpit-for-pytorch", "backpack-for-pytorch")}


def _bare_on(model: nn.Module, inputs: Inputs) -> Step:
    """bench.py's bare step on ``model`` (a peer's own copy)."""
    return _steps(model, inputs, "cpu")[0]


def anomaly(model: nn.Module, inputs: Inputs, bare: Step) -> Step:
    def step() -> None:
        with torch.autograd.detect_anomaly():
            bare()

    return step


def fastai(model: nn.Module, inputs: Inputs, bare: Step) -> Step:
    from fastai.callback.hook import ActivationStats, Hooks, has_params
    from fastai.layers import flatten_model

    clone = copy.deepcopy(model)
    stats = ActivationStats(with_hist=True)
    modules = [m for m in flatten_model(clone) if has_params(m)]  # HookCallback.before_fit's choice
    hooks = Hooks(modules, stats.hook, is_forward=True, detach=True, cpu=True)  # HookCallback._register
    bare_clone, kept = _bare_on(clone, inputs), []

    def step() -> None:
        bare_clone()
        kept.append(hooks.stored)  # ActivationStats.after_batch

    return step


def torchlens(model: nn.Module, inputs: Inputs, bare: Step) -> Step:
    import torchlens as tl
    from torchlens.options import CaptureOptions

    from gradcheck_cli.analysis.loss import compute_loss

    def step() -> None:
        trace = tl.trace(model, inputs, capture=CaptureOptions(save_grads=True))
        out = trace[trace.output_layers[0]].out  # the first output tensor, as pick_output takes
        trace.log_backward(compute_loss("projection", out, None, 0))
        model.zero_grad(set_to_none=True)
        trace.cleanup()

    return step


_WANDB_RUN: list[Any] = []  # one offline run for the process; one watched model copy per reference model


def wandb(model: nn.Module, inputs: Inputs, bare: Step) -> Step:
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true",
                      WANDB_DIR=os.environ.get("WANDB_DIR") or tempfile.mkdtemp(prefix="peers-wandb-"))
    import wandb as wb

    if not _WANDB_RUN:
        _WANDB_RUN.append(wb.init(mode="offline", project="gradcheck-peers",
                                  settings=wb.Settings(console="off", save_code=False, x_disable_stats=True)))
    clone = copy.deepcopy(model)
    _WANDB_RUN[0].watch(clone, log="all", log_freq=1)
    bare_clone = _bare_on(clone, inputs)

    def step() -> None:
        bare_clone()
        _WANDB_RUN[0].log({})  # commits the step's histograms

    return step


def cockpit(model: nn.Module, inputs: Inputs, bare: Step) -> Step:
    from backpack import extend
    from backpack.extensions import BatchGrad
    from cockpit import Cockpit
    from cockpit.utils.configuration import configuration

    from gradcheck_cli.analysis.loss import _seeded, pick_output

    supported = getattr(BatchGrad(), "_BackpropExtension__module_extensions", None) or {}
    missing = sorted({type(m).__name__ for m in model.modules()
                      if supported and next(m.parameters(recurse=False), None) is not None and type(m) not in supported})
    if missing:  # else Cockpit fails later on a parameter without per-sample gradients (grad_batch_transforms)
        raise NotImplementedError(f"BackPACK has no per-sample-gradient extension for {', '.join(missing)}, "
                                  "which Cockpit's economy quantities need for every parameter")
    clone = extend(copy.deepcopy(model))
    params = [p for p in clone.parameters() if p.requires_grad]
    tracker, optimizer, counter = Cockpit(params, quantities=configuration("economy")), torch.optim.SGD(params, lr=0.01), [0]

    def step() -> None:
        out = pick_output(clone(*inputs))
        individual = (out * _seeded(out, 0, None)).flatten(1).sum(1)  # sums to the projection loss
        loss = individual.sum()
        info = {"batch_size": out.shape[0], "individual_losses": individual, "loss": loss, "optimizer": optimizer}
        with tracker(counter[0], info=info):
            loss.backward(create_graph=tracker.create_graph(counter[0]))
        clone.zero_grad(set_to_none=True)
        counter[0] += 1

    return step


FACTORIES: dict[str, Callable[[nn.Module, Inputs, Step], Step]] = {
    "anomaly": anomaly, "fastai": fastai, "torchlens": torchlens, "wandb": wandb, "cockpit": cockpit}


def importable(peer: str) -> bool:
    """Whether the peer's package imports here; a one-line reason where it does not."""
    try:
        __import__(IMPORTS.get(peer, "torch"))
        return True
    except Exception as exc:  # ImportError, or a broken install (e.g. a torchvision that cannot load)
        print(f"peer {peer} skipped: {IMPORTS[peer]} does not import ({type(exc).__name__}: {exc})")
        return False


def _probe(name: str, make: Callable[[], Step]) -> Step | None:
    """The peer's step after one successful call, or None with the reason printed."""
    try:
        step = make()
        step()
        return step
    except Exception as exc:
        print(f"  {name}: skipped ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]})")
        return None


def measure(name: str, peers: list[str], pairs: int, warmup: int, cockpit_pairs: int) -> dict[str, Any]:
    """One row: the bare step's CPU ms and every other step's median per-round CPU-time ratio to it."""
    torch.manual_seed(0)
    model, inputs = MODELS[name]()
    bare, analyze = _steps(model, inputs, "cpu")
    steps: dict[str, Step] = {"bare": bare, "analyze": analyze, "floor": _floor_step(model, bare)}
    for peer in peers:
        if peer != "cockpit" and (step := _probe(peer, lambda: FACTORIES[peer](model, inputs, bare))):
            steps[peer] = step
    cpu: dict[str, list[float]] = {}
    alternate(steps, "cpu", pairs, warmup, cpu=cpu)
    row: dict[str, Any] = {"model": name, "bare_cpu_ms": statistics.median(cpu["bare"]) * 1e3}
    row |= {f"{label}_x": _pair_ratio(cpu[label], cpu["bare"]) for label in steps if label != "bare"}
    if "cockpit" in peers and cockpit_pairs and (step := _probe("cockpit", lambda: cockpit(model, inputs, bare))):
        cpu = {}
        alternate({"bare": bare, "cockpit": step}, "cpu", cockpit_pairs, 1, cpu=cpu)
        row |= {"cockpit_x": _pair_ratio(cpu["cockpit"], cpu["bare"]), "cockpit_pairs": cockpit_pairs}
    return row


def versions(peers: list[str]) -> dict[str, str]:
    """Installed versions of torch, transformers, gradcheck and the measured peers' distributions."""
    found = {}
    for dist in (d for group in ("base", *peers) for d in DISTRIBUTIONS.get(group, ())):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[dist] = importlib.metadata.version(dist)
    return found


def table(rows: list[dict[str, Any]], peers: list[str]) -> str:
    columns = ["analyze", "floor", *peers]
    lines = ["| model | bare ms (CPU) | " + " | ".join(f"{c} x" for c in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    for row in rows:
        cells = [f"{row[f'{c}_x']:.2f}" if f"{c}_x" in row else "-" for c in columns]
        lines.append(f"| {row['model']} | {row['bare_cpu_ms']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=["mlp30", "resnet_bn", "gpt2_small"], choices=list(MODELS))
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--cockpit-pairs", type=int, default=3, help="rounds of Cockpit against the bare step")
    parser.add_argument("--cockpit-models", nargs="*", choices=list(MODELS), help="models Cockpit runs on (default: all)")
    parser.add_argument("--json", type=Path)
    allocator_option(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = set_allocator(args.allocator)
    warnings.filterwarnings("ignore")  # detect_anomaly's notice on every entry, the peers' deprecations
    peers = [peer for peer in args.peers if importable(peer)]
    print(f"machine: {machine('cpu')}; {allocator}; ratios: CPU time of this process, median of per-round ratios")
    rows = []
    for name in args.models:
        print(f"{name}:", flush=True)
        on = [p for p in peers if p != "cockpit" or args.cockpit_models is None or name in args.cockpit_models]
        if "cockpit" in peers and "cockpit" not in on:
            print("  cockpit: skipped (not in --cockpit-models)")
        try:
            rows.append(measure(name, on, args.pairs, args.warmup, args.cockpit_pairs))
        except ImportError as exc:
            print(f"  skipped: {exc}")
    measured = [p for p in peers if any(f"{p}_x" in row for row in rows)]
    found = versions(measured)
    print(f"\n{table(rows, measured)}\n\nversions: " + ", ".join(f"{dist} {v}" for dist, v in found.items()))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine("cpu"), "allocator": allocator, "threads": torch.get_num_threads(),
                                         "pairs": args.pairs, "versions": found, "rows": rows}, indent=2))
    for run in _WANDB_RUN:
        run.finish()


if __name__ == "__main__":
    main()
