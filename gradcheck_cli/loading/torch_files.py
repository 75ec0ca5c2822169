"""Loaders for the PyTorch file formats. Only :func:`load_pickled_module` ever unpickles code."""

from __future__ import annotations

import logging
import re
import traceback
import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradcheck_cli.errors import ModelLoadError, first_line
from gradcheck_cli.loading.base import LoadedModel

PICKLE_REFUSAL = (
    "{path} holds a pickled Python object (a full nn.Module), and unpickling runs arbitrary code from the file"
)
PICKLE_HINT = (
    "pass --trust-pickle only if you trust whoever made it, or save it as a state_dict, "
    "TorchScript or torch.export file instead"
)
_MAX_LISTED = 8


def load_torchscript(path: Path, device: torch.device) -> LoadedModel:
    try:
        module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # noqa: BLE001 - any failure is a damaged or foreign archive
        raise ModelLoadError(f"cannot load TorchScript archive {path}: {first_line(exc)}", hint="re-save it") from None
    return LoadedModel(module, "torchscript", str(path), frontend="torchscript")


_UNREGISTERED = re.compile(r"Deserializing ([\w.]+) in pytree is not registered")


def load_export(path: Path, device: torch.device) -> LoadedModel:
    logged: list[str] = []
    try:
        with _quiet_logger("torch.export", logged):  # it logs why (with a traceback) and raises "see the warnings"
            program = torch.export.load(str(path))
        module = program.module()
    except Exception as exc:  # noqa: BLE001
        missing = next((m.group(1) for text in logged for m in [_UNREGISTERED.search(text)] if m), None)
        if missing is not None:
            raise ModelLoadError(
                f"cannot load torch.export program {path}: its input/output type {missing} is not registered "
                "with torch's pytree", hint=f"import its module first: --import {missing.rpartition('.')[0]}") from None
        raise ModelLoadError(f"cannot load torch.export program {path}: {first_line(exc)}", hint="re-export it") from None
    module.to(device)
    examples = None
    if program.example_inputs is not None:
        args, kwargs = program.example_inputs
        examples = tuple(args) if not kwargs else None
    return exported(module, "export", str(path), examples)


EXPORT_NOTE = "torch.export programs keep the train/eval behaviour they were exported with; --mode does not change it"


def exported(module: torch.nn.Module, fmt: str, source: str, examples: tuple | None = None) -> LoadedModel:
    """A torch.export program's module: observed through its FX graph, its train/eval mode fixed."""
    return LoadedModel(module, fmt, source, frontend="fx", example_inputs=examples, notes=[EXPORT_NOTE],
                       mode_settable=False)


class _Keep(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.into.append(text)


@contextmanager
def _quiet_logger(name: str, into: list[str] | None = None) -> Iterator[None]:
    """Keep a library's warnings (with tracebacks) off stderr: the error we raise says it in one line.
    With ``into``, what it logged is kept there, for the error to say why."""
    logger = logging.getLogger(name)
    level, propagate = logger.level, logger.propagate
    keep = _Keep(into) if into is not None else None
    if keep is not None:
        logger.addHandler(keep)
        logger.propagate = False  # torch's own handler would still print it
        handlers = [h for h in logger.handlers if h is not keep]
        for handler in handlers:
            logger.removeHandler(handler)
    else:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        if keep is not None:
            logger.removeHandler(keep)
            for handler in handlers:
                logger.addHandler(handler)
            logger.propagate = propagate


def read_weights(path: Path, fmt: str) -> Any:
    """A state_dict from ``torch.save`` (safe ``weights_only`` unpickler) or ``.safetensors``.

    Returns :class:`PickledObject` when the file holds something the safe unpickler refuses.
    """
    if fmt == "safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ModelLoadError(f"{path} is a .safetensors file", hint="pip install safetensors") from None
        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"cannot read safetensors file {path}: {first_line(exc)}") from None
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return PickledObject(path)
    except Exception as exc:  # noqa: BLE001 - truncated zips, bad storages...
        raise ModelLoadError(f"cannot read {path}: {first_line(exc)}", hint="is the file complete?") from None


class PickledObject:
    """Marker: the file holds code-bearing pickle data that the safe loader would not touch."""

    def __init__(self, path: Path) -> None:
        self.path = path


def load_pickled_module(path: Path, trust_pickle: bool) -> nn.Module:
    if not trust_pickle:
        raise ModelLoadError(PICKLE_REFUSAL.format(path=path), hint=PICKLE_HINT)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"unpickling {path} failed: {first_line(exc)}", hint="is its code importable here?") from None
    if not isinstance(obj, nn.Module):
        raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not a torch.nn.Module")
    return obj


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Accept a bare state_dict or a checkpoint dict that wraps one (``state_dict``/``model``...)."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return dict(inner)
        if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            return dict(obj)
    raise ModelLoadError(
        f"{path} holds a {type(obj).__name__}, not a state_dict or a model",
        hint="save the model with torch.save(model.state_dict()), torch.jit.save or torch.export.save",
    )


def _prefixes(keys: Any) -> set[str]:
    """The first dotted component of each key, with its dot (``model.``), for keys that have one."""
    return {key.split(".", 1)[0] + "." for key in keys if "." in key}


def strip_common_prefix(state: dict[str, torch.Tensor], expected: Any) -> tuple[dict[str, torch.Tensor], str | None]:
    """Keys saved with an owner's attribute prefix (a LightningModule's ``model.``, DDP's ``module.``)
    -> the keys the model expects, when removing one shared leading prefix makes them match exactly."""
    wanted = set(expected)
    if set(state) == wanted:
        return state, None
    for prefix in sorted(_prefixes(state)):
        stripped = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        if set(stripped) == wanted:
            return stripped, prefix
    return state, None


def apply_state_dict(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> str | None:
    """``load_state_dict(strict=True)`` with one readable line listing what does not fit. A prefix that
    all the model's keys carry in the file (``model.`` in a Lightning checkpoint) is stripped; the note
    saying so is returned."""
    state, prefix = fitted_state(model.state_dict(), state, path)
    model.load_state_dict(state, strict=True)
    if prefix is None:
        return None
    return f"the weights' keys carried the prefix {prefix!r} (a Lightning or DDP checkpoint); it was stripped"


def fitted_state(expected: dict[str, Any], state: dict[str, Any], path: Path) -> tuple[dict[str, Any], str | None]:
    """``state`` with any common owner prefix stripped, checked against the model's keys and shapes
    (anything with a ``.shape``: tensors, or lazily read slices); one readable line when it does not fit."""
    state, prefix = strip_common_prefix(state, expected)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = [
        f"{label}: {_cap(items)}"
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch (file vs model)", mismatched))
        if items
    ]
    if problems:
        ours, theirs = sorted(_prefixes(expected)), sorted(_prefixes(state))
        starts = (f"; the file's keys start with {_cap(theirs)}, the model's with {_cap(ours)}"
                  if ours and theirs and not set(ours) & set(theirs) else "")
        raise ModelLoadError(
            f"state_dict {path} does not fit the factory's model; " + "; ".join(problems) + starts,
            hint="check that --factory builds the same architecture",
        )
    return state, prefix


class _LazySlice:
    """One tensor of a .safetensors file, read only where it is indexed (``[rows]``): a rank reads its shard."""

    def __init__(self, handle: Any, key: str) -> None:
        self._slice = handle.get_slice(key)
        self.shape = tuple(self._slice.get_shape())

    def __getitem__(self, index: Any) -> torch.Tensor:
        return self._slice[index]


def lazy_weights(path: Path, fmt: str) -> dict[str, Any]:
    """A state_dict whose tensors are read on indexing: safetensors slices, or a ``torch.save`` file
    memory-mapped (``mmap=True``: only the pages a rank touches are read)."""
    if fmt == "safetensors":
        from safetensors import safe_open

        handle = safe_open(str(path), framework="pt")
        return {key: _LazySlice(handle, key) for key in handle.keys()}
    try:
        content = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - an old (non-zip) file cannot be mapped; a pickle is refused
        raise ModelLoadError(f"cannot map {path} for per-shard loading: {first_line(exc)}",
                             hint="save it with torch.save (zip format) or as .safetensors") from None
    return extract_state_dict(content, path)


def _cap(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")
