"""Official ONNX backend *node* tests, run through OnnxModule via the Backend adapter.

Every node test whose ops are all registered in our op registry is run (so the
set grows automatically with the registry).  Skips are allowed only for the
reasons listed in ``SKIPS`` below -- the one place where exclusions live.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from gradcheck_cli.onnx.backend import OnnxModuleBackend
from gradcheck_cli.onnx.registry import MAX_OPSET, supported_ops

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from onnx.backend.test.loader import load_model_tests

    ALL_CASES = load_model_tests(kind="node")

_NO_TORCH_DTYPE = "element type torch cannot represent (float8/float4/int4/int2/e8m0)"

#: test-name regex -> reason.  The only place where node tests are skipped.
SKIPS: dict[str, str] = {
    r"test_cast(like)?_(no_saturate_|e8m0_)?\w*(FLOAT8|FLOAT4|INT4|UINT4|INT2|UINT2)\w*": _NO_TORCH_DTYPE,
    r"test_(de)?quantizelinear_\w*(e4m3fn|e5m2|int4|uint4|int2|uint2|float4e2m1)\w*": _NO_TORCH_DTYPE,
    r"test_col2im_5d": "3-D Col2Im is not implemented (torch.nn.functional.fold is 2-D only)",
    r"test_training_dropout(_default)?(_mask)?": "random dropout mask: torch's RNG cannot reproduce the "
    "reference's numpy random stream",
    r"test_(bernoulli|randomuniformlike|randomnormallike|randomnormal|randomuniform)\w*": "random values: torch's "
    "RNG cannot reproduce the reference's numpy random stream (shape/dtype are checked by the unit tests)",
    r"test_equal_string\w*": "string tensors are not supported (no torch dtype)",
    r"test_attention_\w*(bf16|fp16)(_expanded)?": "16-bit attention: torch and the numpy reference round "
    "intermediate bf16/fp16 results differently; outputs differ by 1-2 ulp, above the suite's rtol 1e-3 "
    "(bf16 resolution is 7.8e-3)",
    r"test_scan_sum": "Scan-8 (opset 8, batched form with sequence_lens) is not implemented; Scan 9+ is",
    r"test_identity_(sequence|opt)": "sequence/optional values are not supported (tensors only)",
}

_SUPPORTED = {(d, op) for (d, op) in supported_ops()}


def _graph_ops(g: onnx.GraphProto) -> set[tuple[str, str]]:
    ops = set()
    for n in g.node:
        ops.add(("" if n.domain in ("", "ai.onnx") else n.domain, n.op_type))
        for a in n.attribute:
            for sub in [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs):
                ops |= _graph_ops(sub)
    return ops


def _ops(model: onnx.ModelProto) -> set[tuple[str, str]]:
    ops = _graph_ops(model.graph)
    for f in model.functions:  # local functions are inlined; count their bodies instead
        ops.discard((f.domain, f.name))
        ops.update(("" if n.domain in ("", "ai.onnx") else n.domain, n.op_type) for n in f.node)
    return ops


CASES = [c for c in ALL_CASES if _ops(c.model) <= _SUPPORTED]


def _skip_reason(case) -> str | None:
    """The documented reason to skip ``case`` (a loader TestCase, or just its name), else None."""
    name = case if isinstance(case, str) else case.name
    for pat, reason in SKIPS.items():
        if re.fullmatch(pat, name):
            return reason
    model = None if isinstance(case, str) else case.model
    if model is not None:
        opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
        if opset > MAX_OPSET:
            # only with an onnx newer than the one the interpreter was verified against
            return f"model opset {opset} is newer than the verified opset {MAX_OPSET} (refused by design)"
    return None


def _assert_same(expected: np.ndarray, actual: np.ndarray, rtol: float, atol: float, what: str) -> None:
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind in "biu":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
    else:
        np.testing.assert_allclose(
            actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True, err_msg=what
        )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node(case) -> None:
    reason = _skip_reason(case)
    if reason:
        pytest.skip(reason)
    rep = OnnxModuleBackend.prepare(case.model)
    for i, (inputs, outputs) in enumerate(case.data_sets):
        # exotic element types are shipped as TensorProto rather than numpy arrays
        inputs = [numpy_helper.to_array(t) if isinstance(t, onnx.TensorProto) else t for t in inputs]
        outputs = [numpy_helper.to_array(t) if isinstance(t, onnx.TensorProto) else t for t in outputs]
        got = rep.run(inputs)
        assert len(got) == len(outputs), f"{len(got)} outputs, expected {len(outputs)}"
        for j, (e, a) in enumerate(zip(outputs, got)):
            _assert_same(np.asarray(e), np.asarray(a), case.rtol, case.atol, f"data set {i} output {j}")


def test_node_suite_coverage() -> None:
    """Records how many official node tests are exercised (reported by the maintainer)."""
    print(f"\nONNX node tests: {len(ALL_CASES)} total, {len(CASES)} use only supported ops")
    assert len(CASES) >= 1700


def test_every_float_node_test_backpropagates() -> None:
    """Gradient diagnosis needs every op to be differentiable: run backward through each node test
    with float inputs (sum of its float outputs) and collect any op whose backward fails."""
    import torch

    from gradcheck_cli.onnx import OnnxModule
    from gradcheck_cli.onnx.dtypes import numpy_to_torch

    failures, ran = [], 0
    for case in CASES:
        if _skip_reason(case):
            continue
        m = OnnxModule(case.model)
        inputs = [numpy_helper.to_array(t) if isinstance(t, onnx.TensorProto) else t for t in case.data_sets[0][0]]
        feeds = {}
        for name, value in zip(m.graph_input_order, inputs):
            t = numpy_to_torch(np.asarray(value))
            feeds[name] = t.requires_grad_(True) if t.dtype in (torch.float32, torch.float64) else t
        if not any(t.requires_grad for t in feeds.values()):
            continue
        try:
            out = m(**feeds)
            outs = [o for o in ((out,) if isinstance(out, torch.Tensor) else out) if o is not None and o.requires_grad]
            if not outs:
                continue
            sum(o.float().sum() for o in outs).backward()
            ran += 1
        except Exception as e:  # noqa: BLE001 - collected and reported together
            failures.append(f"{case.name}: {type(e).__name__}: {e}")
    print(f"\nbackward ran through {ran} node tests")
    assert ran > 1000
    assert not failures, "\n".join(failures)
