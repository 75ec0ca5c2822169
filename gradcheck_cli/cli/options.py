"""The command line's options, declared once as ``Annotated`` aliases and reused by every command.

Nothing here imports torch; the choices of ``--format`` come from the one format table
(:mod:`gradcheck_cli.render.formats`).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from gradcheck_cli.cli.formats import OutputFormat


class Loss(str, Enum):
    auto = "auto"
    cross_entropy = "cross-entropy"
    mse = "mse"
    sum = "sum"
    projection = "projection"
    random_target = "random-target"


class Optimizer(str, Enum):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"


class Distributed(str, Enum):
    none = "none"
    auto = "auto"
    ddp = "ddp"
    fsdp = "fsdp"


class Mode(str, Enum):
    train = "train"
    eval = "eval"


class Color(str, Enum):
    auto = "auto"
    always = "always"
    never = "never"


ModelArg = Annotated[str, typer.Argument(
    metavar="MODEL",
    help="Model file (TorchScript, torch.export .pt2, state_dict with --factory, a Hugging Face model folder, pickled module with "
         "--trust-pickle, .safetensors, .onnx) or a factory 'file.py:function'.")]
InputOpt = Annotated[Optional[Path], typer.Option("--input", "-i", help="Data sample: .pt (tensor, tuple, dict, "
                                                  "or {'input','target'}), .npy or .npz.", show_default=False)]
ShapeOpt = Annotated[Optional[list[str]], typer.Option("--input-shape", "-s", metavar="N,C,H,W",
                                                       help="Random input of this shape (repeat for several inputs).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="dtype of random inputs (float32, float16, bfloat16, int64...).")]
RangeOpt = Annotated[Optional[str], typer.Option("--input-range", metavar="LOW,HIGH",
                                                 help="Random integer inputs in [LOW, HIGH), e.g. token ids 0,50000.")]
TargetOpt = Annotated[Optional[Path], typer.Option("--target", "-t", help="Targets/labels file (.pt, .npy, .npz).")]
LossOpt = Annotated[Loss, typer.Option("--loss", help="auto: cross-entropy for integer targets, MSE for float "
                                       "targets, a seeded random projection sum(out*r) without targets.")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1, help="Samples per pass (default: all).")]
BatchesOpt = Annotated[int, typer.Option("--batches", "-n", min=1, help="Passes to aggregate when the sample holds more than one batch.")]
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="cpu, cuda, cuda:N or auto.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seeds random inputs, the projection loss and dropout.")]
ModeOpt = Annotated[Mode, typer.Option("--mode", help="train: BatchNorm/Dropout behave as in training; eval: as at inference.")]
FactoryOpt = Annotated[Optional[str], typer.Option("--factory", "-f", metavar="FILE.py:FUNCTION",
                                                   help="Builds the architecture for a state_dict file.")]
TrustOpt = Annotated[bool, typer.Option("--trust-pickle", help="Allow unpickling a full nn.Module (runs code from the file).")]
FactoryArgOpt = Annotated[Optional[list[str]], typer.Option(
    "--factory-arg", metavar="NAME=VALUE", help="Keyword argument for the factory function (repeatable), e.g. depth=30.")]
ImportOpt = Annotated[Optional[list[str]], typer.Option(
    "--import", metavar="MODULE",
    help="Import this module first (repeatable): the library whose classes a .pt2's inputs/outputs or a pickle use.")]
RemoteCodeOpt = Annotated[bool, typer.Option("--trust-remote-code", help="Hugging Face folder: allow the modeling code it ships (runs it).")]
FailOnOpt = Annotated[str, typer.Option("--fail-on", metavar="KINDS",
                                        help="Finding kinds that make the exit code 1: a comma list, 'all' or 'none'.")]
FormatOpt = Annotated[Optional[OutputFormat], typer.Option(
    "--format", "-F", show_default=False,
    help="table (default), json, markdown (PR comments), html (one self-contained file), github (Actions "
         "annotations; also appends Markdown to $GITHUB_STEP_SUMMARY when set) or junit (XML, one test case per check).")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the report to this file (format from "
                                                   "--format, else the suffix: .json, .md, .html, .xml, .txt).")]
ThresholdOpt = Annotated[Optional[list[str]], typer.Option("--threshold", metavar="NAME=VALUE",
                                                           help="Override a threshold, e.g. dead_ratio=0.2 (repeatable).")]
VerifyOpt = Annotated[bool, typer.Option("--verify", help="ONNX: check the interpreter's output against onnxruntime first.")]
SampleStatsOpt = Annotated[Optional[int], typer.Option(
    "--sample-stats", min=1, metavar="K", show_default=False,
    help="Cheap mode for huge activations: forward statistics on K seeded units (features/channels) per layer; "
         "gradients stay exact. Noted in the report.")]
PlotOpt = Annotated[Optional[Path], typer.Option(
    "--plot", metavar="FILE.png|svg", show_default=False,
    help="Also write the gradient-flow figure (backward signal and |dW| per layer, bad layers marked); needs "
         "matplotlib: pip install 'gradcheck[plots]'.")]
IgnoreOpt = Annotated[Optional[list[str]], typer.Option(
    "--ignore", metavar="GLOB[:KINDS]",
    help="Leave findings on matching layers out of the verdict, e.g. 'head.*' or 'encoder.*:dead_relu' (repeatable; "
         "added to the config file's).")]
ConfigOpt = Annotated[Optional[Path], typer.Option(
    "--config", "-c", metavar="FILE", show_default=False,
    help="Settings file: a pyproject.toml with [tool.gradcheck], or a TOML file of the same keys (gradcheck.toml). "
         "Default: the nearest folder at or above the current directory with a gradcheck.toml or a pyproject.toml "
         "holding [tool.gradcheck] (gradcheck.toml wins in the same folder). GRADCHECK_<KEY> environment variables "
         "(GRADCHECK_FAIL_ON=all) override the file; flags override both.")]
NoConfigOpt = Annotated[bool, typer.Option("--no-config", help="Ignore any config file (GRADCHECK_* variables still apply).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the verdict line.")]
VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", "-v",
    help="More detail on stderr: where each setting came from (config file, GRADCHECK_* variables), each phase as "
         "it ends with its time (loading, forward+backward, diagnosing, rendering) and the total. The report "
         "itself is unchanged. Not with --quiet.")]
ColorOpt = Annotated[Color, typer.Option(
    "--color", case_sensitive=False,
    help="Colours in the output: auto (when the stream is a terminal; never when NO_COLOR is set, always when "
         "FORCE_COLOR is set and not 0), always (also into pipes and CI logs) or never (no ANSI escapes at all).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show Python tracebacks for errors.")]
StepsOpt = Annotated[Optional[int], typer.Option(
    "--steps", min=1, metavar="N", show_default=False,
    help="Also train a copy of the model for N optimiser steps and report gradient health over training "
         "(divergence, runaway gradients, dying units, update/weight ratios). The model file is never changed.")]
EveryOpt = Annotated[Optional[int], typer.Option(
    "--every", min=1, metavar="K", show_default=False,
    help="With --steps: measure every K-th step (and the first and last); default: about 200 logged steps.")]
OptimizerOpt = Annotated[Optional[Optimizer], typer.Option("--optimizer", show_default=False,
                                                           help="With --steps: sgd, adam or adamw (default adamw).")]
LrOpt = Annotated[Optional[float], typer.Option("--lr", min=0.0, show_default=False,
                                                help="With --steps: learning rate (default 1e-3; 1e-2 for sgd).")]
WeightDecayOpt = Annotated[Optional[float], typer.Option("--weight-decay", min=0.0, show_default=False,
                                                         help="With --steps: weight decay (default: the optimiser's; AdamW 0.01).")]
MomentumOpt = Annotated[float, typer.Option("--momentum", min=0.0, max=0.999999, help="With --steps --optimizer sgd: momentum.")]
ClipOpt = Annotated[Optional[float], typer.Option("--clip-grad-norm", min=0.0, metavar="MAX_NORM", show_default=False,
                                                  help="With --steps: clip the global gradient norm before each step.")]
LrScanOpt = Annotated[bool, typer.Option("--lr-scan", help="With --steps: when training diverges, retrain at halved "
                                         "learning rates (up to 6 times) and report the largest stable one.")]
DistributedOpt = Annotated[Distributed, typer.Option(
    "--distributed", help="Run across the processes torchrun started: ddp (replicated), fsdp (FSDP2, sharded per "
                          "block), auto (ddp when WORLD_SIZE > 1), none. Launch: torchrun --nproc-per-node N -m "
                          "gradcheck_cli analyze ... Rank 0 prints and writes the one report.")]
MetaInitOpt = Annotated[bool, typer.Option(
    "--meta-init", help="With --distributed fsdp and a factory: build on the meta device and materialise only each rank's "
                        "shards, re-running every module's reset_parameters, so the model never exists whole.")]
ShardByOpt = Annotated[Optional[str], typer.Option(
    "--shard-by", metavar="GLOB", show_default=False,
    help="With --distributed fsdp: shard the submodules matching GLOB as units (default: the blocks of every ModuleList).")]
DepthOpt = Annotated[Optional[int], typer.Option(
    "--depth", min=0, metavar="N", show_default=False,
    help="Layer table rows: module names cut at N dot-separated parts (e.g. 2: transformer.h), 0: every layer. "
         "Default: one row per block for models that repeat 4 or more blocks (40+ layers), else every layer.")]
OnlyFindingsOpt = Annotated[bool, typer.Option("--only-findings", help="Show only the layers, blocks and init advice "
                                               "that a finding names (the JSON keeps every layer).")]
MaxRowsOpt = Annotated[Optional[int], typer.Option(
    "--max-rows", min=1, metavar="N", show_default=False,
    help="At most N rows per table: rows with findings first, the rest spread evenly, the gaps marked.")]
