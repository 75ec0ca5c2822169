"""The interpreter on CUDA: the official node tests and an export parity run (skipped without a GPU).

Ops create helper tensors (indices, masks, initial states); on a GPU these must
follow the module's device.  OnnxModule runs its graph under
``torch.device(<module device>)`` and ops move numpy-built tensors explicitly;
these tests check that nothing was missed.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from test_interp_backend_node import CASES, _assert_same, _skip_reason

from gradcheck_cli.onnx import OnnxModule
from gradcheck_cli.onnx.dtypes import numpy_to_torch, torch_to_numpy

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def _no_tf32():
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


# parametrised only when a GPU exists, so CPU-only runs report one skip instead of ~1500
_CUDA_CASES = CASES if torch.cuda.is_available() else []


@pytest.mark.parametrize("case", _CUDA_CASES, ids=[c.name for c in _CUDA_CASES])
def test_node_on_cuda(case) -> None:
    reason = _skip_reason(case)
    if reason:
        pytest.skip(reason)
    m = OnnxModule(case.model).to("cuda")
    names = m.graph_input_order
    for inputs, outputs in case.data_sets:
        inputs = [numpy_helper.to_array(t) if isinstance(t, onnx.TensorProto) else t for t in inputs]
        outputs = [numpy_helper.to_array(t) if isinstance(t, onnx.TensorProto) else t for t in outputs]
        feeds = {k: numpy_to_torch(np.asarray(v)).to("cuda") for k, v in zip(names, inputs)}
        with torch.no_grad():
            got = m(**feeds)
        got = (got,) if isinstance(got, torch.Tensor) else got
        for j, (e, a) in enumerate(zip(outputs, got)):
            assert a.device.type == "cuda", f"output {j} on {a.device}"
            _assert_same(np.asarray(e), torch_to_numpy(a), max(case.rtol, 1e-3), max(case.atol, 1e-5), f"output {j}")


def test_transformer_export_gradients_match_cpu(tmp_path) -> None:
    from test_interp_parity_torch import CASES as PARITY
    from test_interp_parity_torch import MODELS, _quiet_export, _randomise

    from gradcheck_cli.onnx import load_onnx

    case = next(c for c in PARITY if c.id == "transformer-dynamo-23")
    torch.manual_seed(0)
    model = MODELS[case.model][0]().eval()
    _randomise(model)
    x = MODELS[case.model][1]()
    path = str(tmp_path / "m.onnx")
    _quiet_export(model, x, path, case)
    cpu = OnnxModule(load_onnx(path))
    gpu = OnnxModule(load_onnx(path)).to("cuda")
    r = torch.randn(2, 5, 16)
    (cpu(*x) * r).sum().backward()
    (gpu(*(t.cuda() for t in x)) * r.cuda()).sum().backward()
    for (n, a), (_, b) in zip(cpu.named_parameters(), gpu.named_parameters()):
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-4, atol=1e-5, msg=n)
