"""Recognise a model file by its content, not its name."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from gradcheck_cli.errors import ModelLoadError

_HELP = "expected a TorchScript archive, a torch.export .pt2, a torch.save file, .safetensors, .onnx or file.py:function"


def detect_format(path: Path) -> str:
    """One of ``torchscript``, ``export``, ``torch_save``, ``safetensors``, ``onnx``.

    Zip archives are told apart by the entries under their top folder (TorchScript has ``code/``, torch.export has
    ``models/`` or an ``archive_format`` record, torch.save has only ``data.pkl``).
    """
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}", hint="check the path")
    if path.is_dir():
        raise ModelLoadError(f"model path is a directory: {path}", hint="pass the model file itself")
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc.strerror}") from None
    if not head:
        raise ModelLoadError(f"model file is empty: {path}", hint=_HELP)
    if head.startswith(b"PK"):
        return _zip_format(path)
    if len(head) >= 9 and _looks_like_safetensors(path, head):
        return "safetensors"
    if head[0] == 0x80 and path.suffix != ".onnx":  # pickle protocol 2+ (legacy torch.save)
        return "torch_save"
    if head[0] == 0x08 or path.suffix == ".onnx":  # ModelProto starts with ir_version (field 1, varint)
        return "onnx"
    raise ModelLoadError(f"unknown model format: {path}", hint=_HELP)


def _zip_format(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:  # a damaged member name is not UTF-8
        raise ModelLoadError(f"model file is a damaged zip archive: {path} ({exc})", hint="re-save the model") from None
    # Members are "<archive>/<entry>/...": judge the entry right under the archive's folder, since a
    # TorchScript archive holds code/__torch__/<the user's packages>/..., which may well be called models/.
    entries = {n.split("/")[1] for n in names if n.count("/") >= 1}
    if "code" in entries or "constants.pkl" in entries:
        return "torchscript"
    if "archive_format" in entries or "models" in entries:
        return "export"
    if any(n.endswith("data.pkl") for n in names):
        return "torch_save"
    raise ModelLoadError(f"zip archive is not a PyTorch model: {path}", hint=_HELP)


def _looks_like_safetensors(path: Path, head: bytes) -> bool:
    (length,) = struct.unpack("<Q", head[:8])
    if not (2 <= length <= 100_000_000) or head[8:9] != b"{":
        return False
    try:
        with path.open("rb") as handle:
            handle.seek(8)
            json.loads(handle.read(length))
    except (ValueError, OSError):
        return False
    return True
