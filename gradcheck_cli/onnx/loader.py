"""Safe loading of ONNX files, including external data.

External data locations come from the (untrusted) model file, so they are
validated *before* any of them is opened: they must be relative paths that stay
inside the model's directory, also after resolving symlinks.  Otherwise a
crafted model could make us read arbitrary files (``../../etc/passwd``).
"""

from __future__ import annotations

import os
from typing import Iterator

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from .errors import OnnxExternalDataError, OnnxLoadError


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto that may carry external data (initializers, attributes, subgraphs)."""
    yield from external_data_helper._get_all_tensors(model)


def _check_location(location: str, base_dir: str, tensor_name: str) -> None:
    if not location:
        raise OnnxExternalDataError(f"tensor {tensor_name!r} has external data without a location")
    if os.path.isabs(location) or location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
        raise OnnxExternalDataError(
            f"tensor {tensor_name!r}: external data location {location!r} is an absolute path; "
            "only paths relative to the model's directory are allowed"
        )
    parts = location.replace("\\", "/").split("/")
    if ".." in parts:
        raise OnnxExternalDataError(
            f"tensor {tensor_name!r}: external data location {location!r} escapes the model's directory ('..')"
        )
    root = os.path.realpath(base_dir)
    target = os.path.realpath(os.path.join(root, location))
    if os.path.commonpath([root, target]) != root:
        raise OnnxExternalDataError(
            f"tensor {tensor_name!r}: external data location {location!r} resolves outside the model's directory"
        )
    if not os.path.isfile(target):
        raise OnnxExternalDataError(f"tensor {tensor_name!r}: external data file {location!r} not found")


def load_onnx(path: str) -> onnx.ModelProto:
    """Load, validate (onnx.checker full check) and return a model with external data resolved.

    Raises OnnxLoadError (a ValueError) for unreadable/truncated/invalid files and
    OnnxExternalDataError (also a ValueError) for unsafe external data references.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OnnxLoadError(f"ONNX file not found: {path}")
    base_dir = os.path.dirname(os.path.abspath(path))
    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, OSError) as e:
        raise OnnxLoadError(f"{path}: not a readable ONNX model (truncated or corrupt?): {e}") from e
    if not model.graph.node and not model.graph.output:
        # protobuf happily parses many garbage/empty byte strings into an empty message
        raise OnnxLoadError(f"{path}: not a valid ONNX model (empty graph; truncated or wrong file?)")

    for t in _all_tensors(model):
        if external_data_helper.uses_external_data(t):
            info = external_data_helper.ExternalDataInfo(t)
            _check_location(info.location, base_dir, t.name)

    try:
        onnx.checker.check_model(path, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise OnnxLoadError(f"{path}: ONNX checker rejected the model: {e}") from e
    except (DecodeError, RuntimeError, ValueError, OSError) as e:
        raise OnnxLoadError(f"{path}: ONNX checker could not read the model: {e}") from e

    try:
        external_data_helper.load_external_data_for_model(model, base_dir)
    except (OSError, ValueError, RuntimeError) as e:
        raise OnnxLoadError(f"{path}: could not load external data: {e}") from e
    return model
