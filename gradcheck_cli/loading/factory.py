"""``file.py:function`` / ``package.module:function`` -> the nn.Module that function builds."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from gradcheck_cli.errors import ModelLoadError


def is_factory_spec(spec: str) -> bool:
    """``models.py:build`` or ``pkg.mod:build`` (a colon, and not just a drive letter or a file that exists)."""
    if ":" not in spec or Path(spec).exists():
        return False
    target, _, function = spec.rpartition(":")
    return bool(target) and function.isidentifier()


def parse_factory_args(items: list[str]) -> dict[str, Any]:
    """``["depth=30", "act='tanh'", "name=relu"]`` -> keyword arguments: Python literals (numbers, booleans,
    quoted strings, tuples) where they parse, else the text itself."""
    import ast

    from gradcheck_cli.errors import UsageError

    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise UsageError(f"malformed --factory-arg {item!r}", hint="use NAME=VALUE, e.g. depth=30")
        try:
            kwargs[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            kwargs[key] = text.strip()
    return kwargs


def call_factory(spec: str, kwargs: dict[str, Any] | None = None) -> Any:
    """Import the factory and call it with ``kwargs`` (``--factory-arg``); it must return an ``nn.Module``."""
    from torch import nn

    target, _, function = spec.rpartition(":")
    module = _import(target)
    builder = getattr(module, function, None)
    if builder is None or not callable(builder):
        raise ModelLoadError(f"factory {spec!r}: {target} has no function {function!r}")
    try:
        model = builder(**(kwargs or {}))
    except TypeError as exc:
        if kwargs and "argument" in str(exc):
            raise ModelLoadError(f"factory {spec!r} does not take these arguments: {exc}",
                                 hint="check the --factory-arg names against the function's parameters") from None
        raise ModelLoadError(f"factory {spec!r} raised TypeError: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - user code: report, never trace
        raise ModelLoadError(f"factory {spec!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"factory {spec!r} returned {type(model).__name__}, not a torch.nn.Module",
            hint="make the function return the model",
        )
    return model


def _import(target: str) -> Any:
    path = Path(target)
    if target.endswith(".py"):
        if not path.is_file():
            raise ModelLoadError(f"factory file not found: {target}")
        name = f"gradcheck_factory_{abs(hash(path.resolve()))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"cannot import factory file {target}")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))  # so the file's own sibling imports work
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001
            sys.modules.pop(name, None)
            raise ModelLoadError(f"importing factory file {target} raised {type(exc).__name__}: {exc}") from exc
        finally:
            sys.path.remove(str(path.resolve().parent))
        return module
    here = str(Path.cwd())
    added = here not in sys.path  # ``examples.models:build`` from the project folder, as ``python -m`` would
    if added:
        sys.path.insert(0, here)
    try:
        return importlib.import_module(target)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"cannot import factory module {target!r}: {type(exc).__name__}: {exc}") from exc
    finally:
        if added:
            sys.path.remove(here)
