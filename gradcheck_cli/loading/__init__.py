"""Model loading: one entry point over every supported format.

Dispatch is on the file's content (:func:`detect_format`), with the factory spec
(``file.py:function``) recognised first. Every loader returns a :class:`LoadedModel`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradcheck_cli.errors import ModelLoadError, UsageError
from gradcheck_cli.loading.base import LoadedModel
from gradcheck_cli.loading.detect import detect_format
from gradcheck_cli.loading.factory import call_factory, is_factory_spec

__all__ = ["LoadedModel", "load_model", "wrap_object", "detect_format"]


def load_model(spec: str, *, factory: str | None = None, trust_pickle: bool = False, device: Any = None,
               trust_remote_code: bool = False, factory_args: dict[str, Any] | None = None) -> LoadedModel:
    """Load ``spec`` (a path, a Hugging Face model folder or ``file.py:function``) onto ``device``."""
    import torch

    device = torch.device(device or "cpu")
    if is_factory_spec(spec):
        if factory:
            raise UsageError("give either a factory as the model or --factory with a weights file, not both")
        module, notes = _eager(call_factory(spec, factory_args))
        return _on_device(LoadedModel(module, "factory", spec, notes=notes), device)

    path = Path(spec)
    from gradcheck_cli.loading.hf_folder import is_hf_folder, load_hf_folder

    hf_folder = path if is_hf_folder(path) else None
    if hf_folder is None and not factory and path.suffix == ".safetensors" and is_hf_folder(path.parent):
        hf_folder = path.parent  # a safetensors file with its config.json beside it
    if hf_folder is not None:
        if factory:
            raise UsageError(f"{hf_folder} is a Hugging Face model folder: its config builds the model", hint="drop --factory")
        return load_hf_folder(hf_folder, device, trust_remote_code)
    fmt = detect_format(path)
    if fmt == "onnx":
        return _load_onnx(path, device)
    from gradcheck_cli.loading import torch_files

    if fmt == "torchscript":
        return torch_files.load_torchscript(path, device)
    if fmt == "export":
        return torch_files.load_export(path, device)

    content = torch_files.read_weights(path, fmt)
    if isinstance(content, torch_files.PickledObject):
        if factory:
            raise ModelLoadError(f"{path} is a pickled module, not a state_dict", hint="drop --factory and pass --trust-pickle")
        module = torch_files.load_pickled_module(path, trust_pickle)
        return _on_device(LoadedModel(module, "pickle", str(path)), device)
    state = torch_files.extract_state_dict(content, path)
    if not factory:
        raise ModelLoadError(
            f"{path} is a state_dict (weights only): gradcheck needs the architecture too",
            hint="pass --factory my_models.py:build_model (a function returning the nn.Module)",
        )
    if not is_factory_spec(factory):
        raise UsageError(f"--factory must look like file.py:function or package.module:function, got {factory!r}")
    model, notes = _eager(call_factory(factory, factory_args))
    note = torch_files.apply_state_dict(model, state, path)
    fmt_name = "safetensors" if fmt == "safetensors" else "state_dict"
    return _on_device(LoadedModel(model, fmt_name, str(path), notes=notes + ([note] if note else [])), device)


def wrap_object(model: Any) -> LoadedModel:
    """A model handed to the Python API: an nn.Module, ScriptModule, ExportedProgram, or a model already
    loaded with :func:`load_model` (so a caller can load a file once and analyse it many times)."""
    import torch

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, torch.export.ExportedProgram):
        from gradcheck_cli.loading.torch_files import exported

        return exported(model.module(), "export", "<ExportedProgram>")
    if isinstance(model, torch.jit.ScriptModule):
        return LoadedModel(model, "torchscript", "<ScriptModule>", frontend="torchscript")
    if isinstance(model, torch.nn.Module):
        module, notes = _eager(model)
        return LoadedModel(module, "module", f"<{type(module).__name__}>", notes=notes)
    raise UsageError(f"cannot analyse a {type(model).__name__}: pass an nn.Module or a model file path")


def _eager(model: Any) -> tuple[Any, list[str]]:
    """The eager module inside ``torch.compile(module)`` (an ``OptimizedModule``: analysed as it is, it
    compiled and named every row ``_orig_mod.*``), with a note; any other model as it is. Only looked for
    when torch._dynamo is already imported: a process that compiled nothing holds no compiled module."""
    import sys

    dynamo = sys.modules.get("torch._dynamo.eval_frame")
    wrapper = getattr(dynamo, "OptimizedModule", None) if dynamo is not None else None
    if wrapper is None or not isinstance(model, wrapper):
        return model, []
    return model._orig_mod, ["a torch.compile'd module: analysed as its original eager module (the same parameters "
                             "and numbers, without compiling)"]


def _on_device(loaded: LoadedModel, device: Any) -> LoadedModel:
    loaded.module.to(device)
    return loaded


def _load_onnx(path: Path, device: Any) -> LoadedModel:
    from gradcheck_cli.loading.onnx_model import load_onnx_model

    return load_onnx_model(path, device)
