"""Settings for ``analyze``: command-line values, else ``GRADCHECK_*`` variables, else the config file, else the defaults.

Kept apart from :mod:`gradcheck_cli.cli.app` so the command definitions read as commands; nothing
here prints or imports torch. The result is typed: the run's :class:`AnalyzeOptions` and where its
data comes from (:class:`DataSpec`), each field set once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import typer

from gradcheck_cli.analysis.options import AnalyzeOptions, DataSpec, Thresholds, parse_fail_on, parse_ignore
from gradcheck_cli.errors import UsageError
from gradcheck_cli.training.options import TrainOptions

CONFIGURABLE = ("fail_on", "input_shape", "input_range", "dtype", "loss", "device", "mode", "seed", "batch_size",
                "batches", "factory", "sample_stats", "steps", "every", "optimizer", "lr", "clip_grad_norm")
"""``analyze`` parameters that ``[tool.gradcheck]`` may set (besides thresholds and ignore, which merge)."""


@dataclass(frozen=True)
class Sources:
    """Where the settings came from, for ``--verbose``."""

    config: Path | None = None
    """The config file read, if any."""
    shadowed: Path | None = None
    """A pyproject.toml with ``[tool.gradcheck]`` beside the discovered gradcheck.toml, not read."""
    from_file: tuple[str, ...] = ()
    """Keys the config file set (command-line spelling)."""
    environment: dict[str, str] = field(default_factory=dict)
    """``GRADCHECK_*`` variables read, as set."""
    overridden: tuple[str, ...] = ()
    """Keys the file or the environment set that a flag overrode."""
    disabled: bool = False
    """``--no-config``."""

    def lines(self) -> list[str]:
        """One line per fact, plain text (the CLI prints them under --verbose)."""
        if self.disabled:
            out = ["config: none (--no-config)"]
        elif self.config is None:
            out = ["config: none found (gradcheck.toml, or pyproject.toml with [tool.gradcheck], at or above "
                   "the current directory)"]
        else:
            out = [f"config: {self.config}" + (f" sets {', '.join(self.from_file)}" if self.from_file else " (empty)")]
        if self.shadowed is not None:
            out.append(f"config: {self.shadowed} also has [tool.gradcheck]; not read ({self.config} wins in the "
                       "same folder)")
        out += [f"environment: {name}={value}" for name, value in self.environment.items()]
        if self.overridden:
            out.append(f"command line overrides: {', '.join(self.overridden)}")
        return out


@dataclass(frozen=True)
class Settings:
    """Everything ``analyze`` resolved from its flags, the environment and the config file."""

    options: AnalyzeOptions
    data: DataSpec
    factory: str | None
    """Builds the architecture for a weights file (``file.py:function``)."""
    sources: Sources = field(default_factory=Sources)


def resolve_settings(ctx: typer.Context, config: Path | None, no_config: bool, *, verify: bool = False,
                     environ: Mapping[str, str] | None = None) -> Settings:
    """Each setting from the command line if given there, else from a ``GRADCHECK_<KEY>`` environment
    variable, else from the config file, else the default.

    Thresholds merge key by key (flags over environment over file) and ignore rules add up. A config
    or environment ``input-shape`` is only a default for random data: it yields to ``--input`` as well
    as to ``--input-shape``; a config ``factory`` is for weights files and yields to a factory given as
    the model.
    """
    from gradcheck_cli.cli.config_file import load_config, load_environment
    from gradcheck_cli.loading.factory import is_factory_spec

    if config is not None and no_config:
        raise UsageError("give --config or --no-config, not both")
    file = load_config(config, start=Path.cwd(), enabled=not no_config)
    env = load_environment(os.environ if environ is None else environ)
    params = ctx.params
    settings = {name: _enum_value(params[name]) for name in CONFIGURABLE}
    overridden = []
    for name, value in (file.values | env.values).items():  # the environment over the file
        if name in settings:
            if _is_default(ctx, name):
                settings[name] = value
            else:
                overridden.append(name.replace("_", "-"))
    if params["input"] is not None and not params["input_shape"]:
        settings["input_shape"] = None
    if params["factory"] is None and is_factory_spec(params["model"]):
        settings["factory"] = None
    thresholds = (file.values.get("thresholds", {}) | env.values.get("thresholds", {})
                  | _parse_thresholds(params["threshold"] or []))
    ignore = [*file.values.get("ignore", []), *env.values.get("ignore", []), *(params["ignore"] or [])]
    options = _options(settings, thresholds, ignore, file.path, verify, _training(settings, params))
    options = dataclasses.replace(options, distributed=_enum_value(params.get("distributed")) or "none",
                                  shard_by=params.get("shard_by"), meta_init=bool(params.get("meta_init")))
    sources = Sources(file.path, file.shadowed, tuple(name.replace("_", "-") for name in file.values),
                      env.variables, tuple(overridden), no_config)
    return Settings(options, _data(params, settings), settings["factory"], sources)


def _options(settings: dict, thresholds: dict[str, float], ignore: list[str], path: Path | None,
             verify: bool, training: TrainOptions | None) -> AnalyzeOptions:
    return AnalyzeOptions(
        loss=settings["loss"], batch_size=settings["batch_size"], batches=settings["batches"],
        device=settings["device"], seed=settings["seed"], mode=settings["mode"],
        fail_on=parse_fail_on(settings["fail_on"]), thresholds=Thresholds().replace(**thresholds),
        verify=verify, ignore=tuple(parse_ignore(rule) for rule in ignore),
        config=str(path) if path is not None else None, sample_stats=settings["sample_stats"],
        training=training,
    )


def _training(settings: dict, params: dict) -> TrainOptions | None:
    """``--steps N`` and its companions; the companions without ``--steps`` are a usage error."""
    if settings["steps"] is None:
        given = [f"--{name.replace('_', '-')}" for name in ("weight_decay", "momentum", "lr_scan")
                 if params.get(name) not in (None, False, 0.0)]
        given += [f"--{name.replace('_', '-')}" for name in ("every", "lr", "clip_grad_norm", "optimizer")
                  if settings[name] is not None]
        if given:
            raise UsageError(f"{', '.join(dict.fromkeys(given))} needs --steps N", hint="e.g. --steps 200 --every 10")
        return None
    return TrainOptions(steps=settings["steps"], every=settings["every"], optimizer=settings["optimizer"] or "adamw",
                        lr=settings["lr"], weight_decay=params.get("weight_decay"), momentum=params.get("momentum") or 0.0,
                        clip_grad_norm=settings["clip_grad_norm"], lr_scan=bool(params.get("lr_scan")))


def _data(params: dict, settings: dict) -> DataSpec:
    from gradcheck_cli.analysis.sample import parse_range, parse_shape  # imports torch: after the flags are read

    if params["input"] is not None and settings["input_shape"]:
        raise UsageError("give --input or --input-shape, not both")
    return DataSpec(
        inputs=params["input"], target=params["target"],
        input_shapes=tuple(parse_shape(s) for s in settings["input_shape"] or []), dtype=settings["dtype"],
        input_range=parse_range(settings["input_range"]) if settings["input_range"] else None,
    )


def _is_default(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is None or source.name in ("DEFAULT", "DEFAULT_MAP")


def _enum_value(value):  # noqa: ANN001, ANN202
    return value.value if isinstance(value, Enum) else value


def _parse_thresholds(items: list[str]) -> dict[str, float]:
    values = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            values[name.strip().replace("-", "_")] = float(value)
        except ValueError:
            raise UsageError(f"malformed --threshold {item!r}", hint="use NAME=VALUE, e.g. dead_ratio=0.2") from None
    return values


def import_modules(names: list[str]) -> None:
    """``--import MODULE``: import libraries whose classes a model file refers to (a .pt2's pytree types),
    from the current folder too; a module that cannot be imported is a usage error naming it."""
    import importlib
    import sys

    here = str(Path.cwd())
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        for name in names:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - any failure to import is the user's to fix
                raise UsageError(f"--import {name}: {type(exc).__name__}: {exc}", hint="is it installed here?") from None
    finally:
        if added:
            sys.path.remove(here)
