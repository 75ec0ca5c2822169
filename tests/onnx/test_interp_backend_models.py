"""Model-level backend tests shipped inside the onnx package (no download needed).

* ``pytorch-converted``, ``pytorch-operator``, ``simple``: small models with
  stored input/output data sets (many at opsets 6-9, from the old exporter).
* ``light``: model-zoo architectures (AlexNet, DenseNet-121, Inception v1/v2,
  ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512) with light weights and a
  stored expected output for the runner's deterministic dummy input.

Skips come from the one ``SKIPS`` dict in test_interp_backend_node.py; models
using unregistered ops are not selected, as for the node tests.
"""

from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from test_interp_backend_node import _SUPPORTED, _assert_same, _ops, _skip_reason

from gradcheck_cli.onnx import OnnxModule
from gradcheck_cli.onnx.backend import OnnxModuleBackend

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from onnx.backend.test.loader import load_model_tests

    _ALL = [c for kind in ("pytorch-converted", "pytorch-operator", "simple") for c in load_model_tests(kind=kind)]


def _model(case) -> onnx.ModelProto:
    return onnx.load(os.path.join(case.model_dir, "model.onnx"))


MODEL_CASES = [c for c in _ALL if _ops(_model(c)) <= _SUPPORTED]
_LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
LIGHT = sorted(glob.glob(os.path.join(_LIGHT_DIR, "light_*.onnx")))


@pytest.mark.parametrize("case", MODEL_CASES, ids=[f"{c.kind}/{c.name}" for c in MODEL_CASES])
def test_model(case) -> None:
    reason = _skip_reason(case.name)
    if reason:
        pytest.skip(reason)
    rep = OnnxModuleBackend.prepare(_model(case))
    sets = sorted(glob.glob(os.path.join(case.model_dir, "test_data_set_*")))
    assert sets
    for d in sets:
        inputs = [numpy_helper.to_array(onnx.load_tensor(f)) for f in sorted(glob.glob(f"{d}/input_*.pb"))]
        outputs = [numpy_helper.to_array(onnx.load_tensor(f)) for f in sorted(glob.glob(f"{d}/output_*.pb"))]
        got = rep.run(inputs)
        assert len(got) >= len(outputs)
        for j, (e, a) in enumerate(zip(outputs, got)):
            _assert_same(e, a, case.rtol, case.atol, f"{os.path.basename(d)} output {j}")


@pytest.mark.parametrize("path", LIGHT, ids=[os.path.basename(p)[6:-5] for p in LIGHT])
def test_light_model_zoo(path: str) -> None:
    """Input: arange(n)/n in the declared shape, as onnx's runner generates for these models."""
    model = onnx.load(path)
    om = OnnxModule(model)
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for x in model.graph.input:
        if x.name not in inits:
            shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in x.type.tensor_type.shape.dim)
            n = int(np.prod(shape))
            value = (np.arange(n).reshape(shape) / n).astype(np.float32)
            feeds[x.name] = torch.from_numpy(value).requires_grad_()
    out = om(**feeds)
    out = out[0] if isinstance(out, tuple) else out
    expected = numpy_helper.to_array(onnx.load_tensor(path[: -len(".onnx")] + "_output_0.pb"))
    _assert_same(expected, out.detach().numpy(), 2e-3, 1e-7, "output 0")
    # and the whole network back-propagates (light weights are ConstantOfShape outputs in some
    # of these models, so the input gradient is checked as well as any initializer's)
    (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    grads = [t.grad for t in feeds.values()] + [p.grad for p in om.parameters() if p.grad is not None]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(p.grad is not None for p in om.parameters()) >= len(list(om.parameters())) // 2
