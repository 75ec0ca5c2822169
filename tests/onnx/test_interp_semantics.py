"""Unit tests for ONNX semantics that are easy to get wrong, cross-checked with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from interp_helpers import one_node_model, run_ort, run_ours

I64 = np.int64


def both(model, inputs):
    ours, ref = run_ours(model, inputs), run_ort(model, inputs)
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    return ours


def test_reshape_zero_copies_dim_unless_allowzero() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    m = one_node_model("Reshape", {"x": x}, initializers={"s": np.array([0, -1], I64)}, opset=14)
    assert both(m, {"x": x})[0].shape == (2, 12)
    empty = np.zeros((0, 3), np.float32)
    m = one_node_model("Reshape", {"x": empty}, initializers={"s": np.array([3, 0], I64)}, opset=14, allowzero=1)
    assert both(m, {"x": empty})[0].shape == (3, 0)
    m = one_node_model("Reshape", {"x": empty}, initializers={"s": np.array([3, 0], I64)}, opset=14)
    with pytest.raises(RuntimeError):  # 0 copies dim 1 (=3): 0 elements cannot fill 3x3
        run_ours(m, {"x": empty})


@pytest.mark.parametrize(
    "starts,ends,steps",
    [([-1], [-(2**63)], [-2]), ([20], [-20], [-3]), ([2], [100], [3]), ([5], [1], [1]), ([-3], [2**63 - 1], [-1])],
)
def test_slice_negative_steps_and_clamping(starts, ends, steps) -> None:
    x = np.arange(10, dtype=np.float32)
    inits = {"st": np.array(starts, I64), "en": np.array(ends, I64), "ax": np.array([0], I64),
             "sp": np.array(steps, I64)}
    m = one_node_model("Slice", {"x": x}, initializers=inits, opset=13)
    got = run_ours(m, {"x": x})[0]
    # the spec clamps ends to [-1, dim-1] for negative steps, i.e. numpy semantics (as the ONNX
    # reference implementation); onnxruntime instead treats INT64_MAX as "run to the start"
    np.testing.assert_array_equal(got, x[slice(starts[0], ends[0], steps[0])])
    if ends[0] != 2**63 - 1:
        np.testing.assert_array_equal(got, run_ort(m, {"x": x})[0])


def test_slice_2d_negative_step_on_second_axis() -> None:
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    inits = {"st": np.array([1, -1], I64), "en": np.array([3, 0], I64), "ax": np.array([0, 1], I64),
             "sp": np.array([1, -2], I64)}
    m = one_node_model("Slice", {"x": x}, initializers=inits, opset=13)
    np.testing.assert_array_equal(both(m, {"x": x})[0], x[1:3, -1:0:-2])


def test_split_forms() -> None:
    x = np.arange(7, dtype=np.float32)
    # opset 11: attribute
    m = one_node_model("Split", {"x": x}, outputs=("a", "b"), opset=11, split=[3, 4])
    assert [o.tolist() for o in both(m, {"x": x})] == [[0, 1, 2], [3, 4, 5, 6]]
    # opset 13: input
    m = one_node_model("Split", {"x": x}, outputs=("a", "b"), opset=13, initializers={"s": np.array([5, 2], I64)})
    assert [len(o) for o in both(m, {"x": x})] == [5, 2]
    # opset 18: num_outputs with an uneven last chunk
    m = one_node_model("Split", {"x": x}, outputs=("a", "b", "c"), opset=18, num_outputs=3)
    assert [len(o) for o in both(m, {"x": x})] == [3, 3, 1]
    # no split info: equal parts per declared outputs
    x6 = np.arange(6, dtype=np.float32)
    m = one_node_model("Split", {"x": x6}, outputs=("a", "b", "c"), opset=13)
    assert [len(o) for o in both(m, {"x": x6})] == [2, 2, 2]


def test_integer_div_truncates_and_mod_modes() -> None:
    a, b = np.array([-7, 7, -7, 7], I64), np.array([2, 2, -2, -2], I64)
    m = one_node_model("Div", {"a": a, "b": b})
    assert both(m, {"a": a, "b": b})[0].tolist() == [-3, 3, 3, -3]
    m = one_node_model("Mod", {"a": a, "b": b})
    assert both(m, {"a": a, "b": b})[0].tolist() == [1, 1, -1, -1]  # sign of divisor
    m = one_node_model("Mod", {"a": a, "b": b}, fmod=1)
    assert both(m, {"a": a, "b": b})[0].tolist() == [-1, 1, -1, 1]  # sign of dividend


def test_gather_negative_indices() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    idx = np.array([[-1, 0], [1, -4]], I64)
    m = one_node_model("Gather", {"x": x, "i": idx}, axis=1)
    np.testing.assert_array_equal(both(m, {"x": x, "i": idx})[0], np.take(x, idx, axis=1))


def test_expand_is_bidirectional() -> None:
    x = np.arange(3, dtype=np.float32).reshape(3, 1)
    m = one_node_model("Expand", {"x": x}, initializers={"s": np.array([2, 1, 4], I64)})
    assert both(m, {"x": x})[0].shape == (2, 3, 4)


def test_pad_modes_and_negative_pads() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    pads = np.array([1, 2, 2, -1], I64)  # begin(ax0, ax1), end(ax0, ax1); negative crops
    for mode in ("constant", "reflect", "edge", "wrap"):
        m = one_node_model("Pad", {"x": x}, initializers={"p": pads}, opset=19, mode=mode)
        got = run_ours(m, {"x": x})[0]
        if mode != "wrap":  # onnxruntime lacks wrap with negative pads; check against numpy instead
            np.testing.assert_array_equal(got, run_ort(m, {"x": x})[0])
        np_mode = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode]
        np.testing.assert_array_equal(got, np.pad(x[:, :3], ((1, 2), (2, 0)), mode=np_mode))


def test_softmax_pre13_coerces_to_2d() -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    m = one_node_model("Softmax", {"x": x}, opset=11, axis=1)
    got = both(m, {"x": x})[0]
    flat = x.reshape(2, 12)
    e = np.exp(flat - flat.max(1, keepdims=True))
    np.testing.assert_allclose(got, (e / e.sum(1, keepdims=True)).reshape(x.shape), rtol=1e-5)
    m = one_node_model("LogSoftmax", {"x": x}, opset=13, axis=1)
    both(m, {"x": x})


def test_clip_attribute_and_input_forms() -> None:
    x = np.linspace(-3, 3, 7).astype(np.float32)
    m = one_node_model("Clip", {"x": x}, opset=6, min=-1.0, max=2.0)
    assert run_ours(m, {"x": x})[0].tolist() == [-1, -1, -1, 0, 1, 2, 2]
    m = one_node_model("Clip", {"x": x, "": np.zeros(0)}, opset=13, initializers={"hi": np.array(1.5, np.float32)})
    assert run_ours(m, {"x": x})[0].tolist() == [-3, -2, -1, 0, 1, 1.5, 1.5]


def test_random_ops_shapes_dtypes_ranges_and_seeding() -> None:
    x = np.zeros((3, 4), np.float64)
    m = one_node_model("RandomNormalLike", {"x": x}, opset=22, seed=3.0, mean=5.0, scale=0.01)
    a, b = run_ours(m, {"x": x})[0], run_ours(m, {"x": x})[0]
    assert a.shape == (3, 4) and a.dtype == np.float64 and np.array_equal(a, b)
    assert abs(a.mean() - 5.0) < 0.05
    m = one_node_model("RandomUniformLike", {"x": x}, opset=22, low=-2.0, high=-1.0)
    u = run_ours(m, {"x": x})[0]
    assert ((u >= -2) & (u <= -1)).all()
    p = np.full((1000,), 0.3, np.float32)
    s = run_ours(one_node_model("Bernoulli", {"p": p}, opset=22, seed=1.0), {"p": p})[0]
    assert set(np.unique(s)) <= {0.0, 1.0} and 0.2 < s.mean() < 0.4
