"""Differentiable ONNX interpreter for gradcheck.

``OnnxModule`` runs an ONNX graph with torch ops so that gradients w.r.t. every
float initializer can be inspected; ``load_onnx`` loads a file safely.
"""

from .errors import OnnxExternalDataError, OnnxLoadError, OnnxUnsupportedError
from .loader import load_onnx
from .module import OnnxModule
from .registry import supported_ops

__all__ = [
    "OnnxExternalDataError",
    "OnnxLoadError",
    "OnnxModule",
    "OnnxUnsupportedError",
    "load_onnx",
    "supported_ops",
]
