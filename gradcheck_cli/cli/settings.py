"""Settings for ``analyze``: command-line values, else the config file, else the defaults.

Kept apart from :mod:`gradcheck_cli.cli.app` so the command definitions read as commands; nothing here
prints or imports torch.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from gradcheck_cli.errors import UsageError

CONFIGURABLE = ("fail_on", "input_shape", "input_range", "dtype", "loss", "device", "mode", "seed", "batch_size",
                "batches", "factory", "sample_stats")
"""``analyze`` parameters that ``[tool.gradcheck]`` may set (besides thresholds and ignore, which merge)."""


def resolve_settings(ctx: typer.Context, config: Path | None, no_config: bool) -> dict:
    """Each setting from the command line if given there, else from the config file, else the default.

    Thresholds merge key by key (flags win) and ignore rules add up. A config ``input-shape`` is
    only a default for random data: it yields to ``--input`` as well as to ``--input-shape``; a
    config ``factory`` is for weights files and yields to a factory given as the model.
    """
    from gradcheck_cli.cli.config_file import load_config
    from gradcheck_cli.loading.factory import is_factory_spec

    if config is not None and no_config:
        raise UsageError("give --config or --no-config, not both")
    file = load_config(config, start=Path.cwd(), enabled=not no_config)
    params = ctx.params
    settings = {name: _enum_value(params[name]) for name in CONFIGURABLE}
    for name, value in file.values.items():
        if name in settings and _is_default(ctx, name):
            settings[name] = value
    if params["input"] is not None and not params["input_shape"]:
        settings["input_shape"] = None
    if params["factory"] is None and is_factory_spec(params["model"]):
        settings["factory"] = None
    settings["thresholds"] = file.values.get("thresholds", {}) | _parse_thresholds(params["threshold"] or [])
    settings["ignore"] = [*file.values.get("ignore", []), *(params["ignore"] or [])]
    settings["config"] = str(file.path) if file.path is not None else None
    return settings


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
