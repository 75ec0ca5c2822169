"""``[tool.gradcheck]``: settings a project keeps next to its code, merged under the command line.

Resolution is one rule, applied per setting: a flag given on the command line wins, else a
``GRADCHECK_<KEY>`` environment variable (:func:`load_environment`), else the config file's value,
else the built-in default. The file is ``--config FILE`` or, without it, found by walking up from
the current directory (as pytest and ruff do): the nearest folder holding a ``gradcheck.toml`` (its
keys at the top level) or a ``pyproject.toml`` with a ``[tool.gradcheck]`` table; in one folder
``gradcheck.toml`` wins, as ``ruff.toml`` does over ``pyproject.toml``. ``--no-config`` ignores the
file (not the environment).

Keys use the command line's spelling (``fail-on``, ``input-shape``; ``fail_on`` is accepted
too). Values are checked here, with the file and key in every message, so a typo in CI fails
loudly instead of silently running with defaults.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gradcheck_cli.errors import UsageError
from gradcheck_cli.training.options import OPTIMIZERS
from gradcheck_cli.analysis.options import LOSSES, MODES, Thresholds, parse_fail_on, parse_ignore

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TABLE = "tool.gradcheck"
STANDALONE = "gradcheck.toml"
"""The standalone config file's name: the keys of ``[tool.gradcheck]`` at its top level."""
ENV_PREFIX = "GRADCHECK_"


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("a string")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("an integer")
    return value


def _positive(value: Any) -> int:
    if _integer(value) < 1:
        raise TypeError("a positive integer")
    return value


def _choice(*choices: str) -> Callable[[Any], str]:
    def read(value: Any) -> str:
        if _string(value) not in choices:
            raise TypeError(f"one of {', '.join(map(repr, choices))}")
        return value
    return read


def _strings(value: Any) -> list[str]:
    """A string or a list of strings (``fail-on = "all"`` and ``fail-on = ["nonfinite"]`` both read well)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise TypeError("a string or a list of strings")


def _fail_on(value: Any) -> str:
    text = ",".join(_strings(value))
    parse_fail_on(text)  # raises naming the unknown kind
    return text


def _ignore(value: Any) -> list[str]:
    rules = _strings(value)
    for rule in rules:
        parse_ignore(rule)
    return rules


def _shape(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return ",".join(map(str, value))
    return _string(value)


def _shapes(value: Any) -> list[str]:
    """``"8,3,32,32"``, ``[8, 3, 32, 32]``, or a list of those for models with several inputs."""
    from gradcheck_cli.analysis.sample import parse_shape  # imports torch: only when the key is there

    if isinstance(value, list) and value and all(isinstance(v, (list, str)) for v in value):
        shapes = [_shape(v) for v in value]
    else:
        try:
            shapes = [_shape(value)]
        except TypeError:
            raise TypeError('a shape ("8,3,32,32" or [8, 3, 32, 32]) or a list of shapes') from None
    for shape in shapes:
        parse_shape(shape)  # raises saying what is malformed
    return shapes


def _range(value: Any) -> str:
    from gradcheck_cli.analysis.sample import parse_range

    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        text = f"{value[0]},{value[1]}"
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError('"LOW,HIGH" or [LOW, HIGH]')
    parse_range(text)
    return text


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise TypeError("a positive number")
    return float(value)


def _thresholds(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise TypeError("a table of NAME = number")
    out = {}
    for name, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise TypeError(f"a table of NAME = number ({name!r} is {type(number).__name__})")
        out[name.replace("-", "_")] = float(number)
    Thresholds().replace(**out)  # raises naming an unknown threshold
    return out


KEYS: dict[str, Callable[[Any], Any]] = {
    "fail-on": _fail_on,
    "thresholds": _thresholds,
    "ignore": _ignore,
    "input-shape": _shapes,
    "input-range": _range,
    "dtype": _string,
    "loss": _choice(*LOSSES),
    "device": _string,
    "mode": _choice(*MODES),
    "seed": _integer,
    "batch-size": _positive,
    "batches": _positive,
    "factory": _string,
    "sample-stats": _positive,
    "steps": _positive,
    "every": _positive,
    "optimizer": _choice(*OPTIMIZERS),
    "lr": _positive_number,
    "clip-grad-norm": _positive_number,
}
"""Every key ``[tool.gradcheck]`` accepts, with the reader that checks and normalises its value.
Values come out in the command line's own form (``"8,3,32,32"``), so the same parsers judge them."""


@dataclass(frozen=True)
class FileConfig:
    """The validated ``[tool.gradcheck]`` settings, keyed by the CLI parameter name (``fail_on``)."""

    path: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)
    shadowed: Path | None = None
    """A ``pyproject.toml`` beside the discovered ``gradcheck.toml`` whose ``[tool.gradcheck]`` was not read."""

    def where(self, key: str) -> str:
        return f"{self.path}: [{TABLE}] {key}"


def discover(start: Path) -> Path | None:
    """The config at or above ``start``: in each folder from ``start`` up, a ``gradcheck.toml``, else a
    ``pyproject.toml`` that has a ``[tool.gradcheck]`` table; the nearest folder with either wins."""
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / STANDALONE).is_file():
            return folder / STANDALONE
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            try:
                if TABLE in _tables(_read(candidate)):
                    return candidate
            except UsageError:
                if "tool.gradcheck" in candidate.read_text(encoding="utf-8", errors="replace"):
                    raise  # our table is in there: a broken config must not silently mean defaults
                continue  # someone else's broken pyproject above us is not ours to judge
    return None


def load_config(explicit: Path | None, *, start: Path, enabled: bool = True) -> FileConfig:
    """The config in force: ``explicit`` (``--config``), else the discovered one, else empty."""
    if not enabled:
        return FileConfig()
    path = explicit if explicit is not None else discover(start)
    if path is None:
        return FileConfig()
    if not path.is_file():
        raise UsageError(f"config file {path} not found" if not path.exists() else f"config file {path} is not a file")
    data = _read(path)
    if "tool" in data and isinstance(data["tool"], dict) and "gradcheck" in data["tool"]:
        table = data["tool"]["gradcheck"]
    elif path.name == "pyproject.toml":
        raise UsageError(f"{path} has no [{TABLE}] table", hint="add one, or point --config at another file")
    else:
        table = data  # a standalone gradcheck.toml: the keys at the top level
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [{TABLE}] must be a table")
    return FileConfig(_display(path), _validate(table, path), _shadowed(path) if explicit is None else None)


def _shadowed(path: Path) -> Path | None:
    """The ``pyproject.toml`` beside a discovered ``gradcheck.toml`` that holds a ``[tool.gradcheck]`` too."""
    sibling = path.parent / "pyproject.toml"
    if path.name != STANDALONE or not sibling.is_file():
        return None
    try:
        return _display(sibling) if TABLE in _tables(_read(sibling)) else None
    except UsageError:
        return None


@dataclass(frozen=True)
class EnvConfig:
    """The validated ``GRADCHECK_<KEY>`` overrides, keyed by the CLI parameter name (``fail_on``)."""

    values: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    """The variables read, as set (``{"GRADCHECK_FAIL_ON": "all"}``)."""


def env_name(key: str) -> str:
    """``fail-on`` -> ``GRADCHECK_FAIL_ON``."""
    return ENV_PREFIX + key.upper().replace("-", "_")


def load_environment(environ: Mapping[str, str]) -> EnvConfig:
    """``GRADCHECK_<KEY>`` for every config key: ``GRADCHECK_FAIL_ON=all``, ``GRADCHECK_SEED=3``.

    A value is read as a TOML value when it is one the key accepts (``3``, ``[8, 16]``, ``["a:dead_relu",
    "b"]``, ``{dead-ratio = 0.3}``), else as the text itself (``all``, ``8,3,32,32``, ``cuda:1``);
    ``GRADCHECK_THRESHOLDS`` also takes ``NAME=VALUE,NAME=VALUE``. An empty variable counts as unset;
    other ``GRADCHECK_*`` names (``GRADCHECK_DIR`` in a CI workflow) are not ours and are left alone. A
    bad value is a usage error naming the variable.
    """
    values: dict[str, Any] = {}
    variables: dict[str, str] = {}
    for key, reader in KEYS.items():
        name = env_name(key)
        text = environ.get(name, "")
        if not text.strip():
            continue
        try:
            values[key.replace("-", "_")] = _env_value(reader, text.strip(), key == "thresholds")
        except TypeError as exc:
            raise UsageError(f"environment variable {name}={text!r}: must be {exc}") from None
        except UsageError as exc:
            raise UsageError(f"environment variable {name}={text!r}: {exc}") from None
        variables[name] = text
    return EnvConfig(values, variables)


def _env_value(reader: Callable[[Any], Any], text: str, pairs: bool) -> Any:
    """The TOML reading of ``text`` when the key accepts it, else ``text`` itself. When neither is accepted,
    the error of the reading the user meant: the TOML one for a number, array or table, else the text's."""
    try:
        parsed = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        parsed = None
    meant_toml = isinstance(parsed, (int, float, list, dict)) and not isinstance(parsed, bool)
    if parsed is not None:
        try:
            return reader(parsed)
        except (TypeError, UsageError):
            if meant_toml:
                try:
                    return reader(_pairs(text) if pairs else text)
                except (TypeError, UsageError):
                    pass
                raise
    return reader(_pairs(text) if pairs else text)


def _pairs(text: str) -> dict[str, float]:
    """``dead_ratio=0.3,exploding_gradient_ratio=1e4`` (``--threshold``'s spelling, comma-separated)."""
    out = {}
    for item in text.split(","):
        name, sep, number = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(number)
        except ValueError:
            raise TypeError("NAME=VALUE pairs separated by commas, e.g. dead_ratio=0.3") from None
    return out


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}") from None


def _tables(data: dict[str, Any]) -> set[str]:
    tool = data.get("tool")
    return {f"tool.{name}" for name in tool} if isinstance(tool, dict) else set()


def _validate(table: dict[str, Any], path: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in table.items():
        canonical = key.replace("_", "-")
        reader = KEYS.get(canonical)
        if reader is None:
            raise UsageError(f"{path}: unknown key {key!r} in [{TABLE}]", hint=f"known keys: {', '.join(KEYS)}")
        try:
            values[canonical.replace("-", "_")] = reader(value)
        except TypeError as exc:
            raise UsageError(f"{path}: [{TABLE}] {canonical} must be {exc}") from None
        except UsageError as exc:
            raise UsageError(f"{path}: [{TABLE}] {canonical}: {exc}") from None
    if "factory" in values:
        values["factory"] = _factory_relative_to(values["factory"], path.parent)
    return values


def _factory_relative_to(spec: str, folder: Path) -> str:
    """``models.py:build`` in a config file means the file next to the config, wherever gradcheck runs."""
    target, sep, function = spec.rpartition(":")
    if sep and target.endswith(".py") and not Path(target).is_absolute():
        return f"{_display(folder / target)}:{function}"
    return spec


def _display(path: Path) -> Path:
    """Relative to the current directory when below it (reports stay the same on every machine)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path.resolve()


__all__ = ["KEYS", "EnvConfig", "FileConfig", "discover", "env_name", "load_config", "load_environment"]
