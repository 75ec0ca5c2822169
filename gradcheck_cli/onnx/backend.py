"""``onnx.backend.base.Backend`` adapter over OnnxModule.

Lets the official ONNX backend test-suite (and any tool speaking the backend
API) run models through the interpreter: inputs/outputs are numpy arrays.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
import torch
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from .dtypes import numpy_to_torch, torch_to_numpy
from .module import OnnxModule


class OnnxModuleRep(BackendRep):
    """A prepared model: runs OnnxModule without autograd (inference, like the test-suite expects)."""

    def __init__(self, module: OnnxModule) -> None:
        self.module = module

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            named = {k: numpy_to_torch(np.asarray(v)) for k, v in inputs.items()}
        else:
            vals = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            # positional values follow the graph inputs; when there are more values than
            # non-initializer inputs they also cover the initializer-backed (optional) ones
            m = self.module
            order = m.graph_input_order if len(vals) > len(m.input_names) else m.input_names
            named = {k: numpy_to_torch(np.asarray(v)) for k, v in zip(order, vals)}
        with torch.no_grad():
            out = self.module(**named)
        outs = (out,) if isinstance(out, torch.Tensor) else out
        return tuple(torch_to_numpy(o) for o in outs)


class OnnxModuleBackend(Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> OnnxModuleRep:
        return OnnxModuleRep(OnnxModule(model, base_dir=kwargs.get("base_dir")))

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[Any, Any]] | None = None, **kwargs: Any) -> tuple:
        raise NotImplementedError("run_node: wrap the node in a model and use run_model")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU
