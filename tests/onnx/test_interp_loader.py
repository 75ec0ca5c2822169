"""load_onnx: external data confinement, corrupt files, checker failures."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from gradcheck_cli.onnx import OnnxExternalDataError, OnnxLoadError, OnnxModule, load_onnx


def _model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.arange(64, dtype=np.float32).reshape(8, 8), "weight")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _save_external(tmp_path, location: str = "weights.bin") -> str:
    d = tmp_path / "model"
    d.mkdir()
    path = str(d / "model.onnx")
    onnx.save_model(_model(), path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    if location != "weights.bin":
        m = onnx.load(path, load_external_data=False)
        for t in external_data_helper._get_all_tensors(m):
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        onnx.save_model(m, path)
    return path


def test_external_data_inside_directory_loads(tmp_path) -> None:
    path = _save_external(tmp_path)
    m = OnnxModule(load_onnx(path), os.path.dirname(path))
    torch.testing.assert_close(m.initializer("weight"), torch.arange(64.0).reshape(8, 8))


def test_external_data_in_subdirectory_loads(tmp_path) -> None:
    path = _save_external(tmp_path)
    sub = tmp_path / "model" / "data"
    sub.mkdir()
    os.replace(tmp_path / "model" / "weights.bin", sub / "weights.bin")
    m = onnx.load(path, load_external_data=False)
    for t in external_data_helper._get_all_tensors(m):
        for e in t.external_data:
            if e.key == "location":
                e.value = "data/weights.bin"
    onnx.save_model(m, path)
    assert load_onnx(path).graph.initializer[0].raw_data


@pytest.mark.parametrize("location", ["../weights.bin", "data/../../weights.bin", "ABS"])
def test_external_data_escaping_directory_is_refused(tmp_path, location: str) -> None:
    outside = tmp_path / "weights.bin"
    outside.write_bytes(np.arange(64, dtype=np.float32).tobytes())
    if location == "ABS":
        location = str(outside)
    path = _save_external(tmp_path, location)
    with pytest.raises(OnnxExternalDataError) as ei:
        load_onnx(path)
    assert isinstance(ei.value, ValueError)
    assert location in str(ei.value)


def test_external_data_symlink_escape_is_refused(tmp_path) -> None:
    outside = tmp_path / "secret.bin"
    outside.write_bytes(np.arange(64, dtype=np.float32).tobytes())
    path = _save_external(tmp_path, "link.bin")
    os.symlink(outside, tmp_path / "model" / "link.bin")
    with pytest.raises(OnnxExternalDataError, match="outside"):
        load_onnx(path)


def test_missing_external_file_is_a_load_error(tmp_path) -> None:
    path = _save_external(tmp_path)
    os.remove(tmp_path / "model" / "weights.bin")
    with pytest.raises(OnnxLoadError, match="not found"):
        load_onnx(path)


def test_truncated_file_is_rejected(tmp_path) -> None:
    good = tmp_path / "good.onnx"
    onnx.save_model(_model(), str(good))
    data = good.read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxLoadError):
        load_onnx(str(bad))


def test_garbage_and_missing_files_are_rejected(tmp_path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf \x00\xff\xfe")
    with pytest.raises(OnnxLoadError):
        load_onnx(str(junk))
    with pytest.raises(OnnxLoadError, match="not found"):
        load_onnx(str(tmp_path / "nope.onnx"))


def test_checker_failure_is_a_load_error(tmp_path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["undefined_value"], ["y"])], "g", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "invalid.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(OnnxLoadError, match="checker"):
        load_onnx(str(path))


def test_custom_domain_op_loads_and_is_reported_as_unsupported(tmp_path) -> None:
    """The checker accepts unknown domains; the interpreter then names the op and node."""
    from gradcheck_cli.onnx import OnnxUnsupportedError

    node = helper.make_node("FusedGelu", ["x"], ["y"], name="fused_1", domain="com.microsoft")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    path = tmp_path / "custom.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                            helper.make_opsetid("com.microsoft", 1)]), str(path))
    with pytest.raises(OnnxUnsupportedError, match=r"FusedGelu.*com\.microsoft.*fused_1"):
        OnnxModule(load_onnx(str(path)))
