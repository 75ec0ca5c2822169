"""Every bad input: one line on stderr starting ``gradcheck: error:``, no traceback, a documented exit code.

One table: each case builds its files in ``tmp_path`` and returns the CLI arguments, the exit code
and a substring the message must contain (what is wrong / where / what to do).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from robust_helpers import (
    export_bytes,
    save_onnx_external,
    onnx_bytes,
    torchscript_bytes,
    write_factory,
)
from torch import nn


@dataclass
class Case:
    args: list
    code: int
    message: str | list[str]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _x(tmp: Path, tensor, name: str = "x.pt") -> Path:
    path = tmp / name
    torch.save(tensor, path)
    return path


def model_missing(tmp, fac):
    return Case([tmp / "nope.pt", "-s", "2,8"], 2, ["model file not found", "nope.pt"])


def model_directory(tmp, fac):
    (tmp / "adir").mkdir()
    return Case([tmp / "adir", "-s", "2,8"], 2, "model path is a directory")


def model_empty(tmp, fac):
    return Case([_write(tmp / "empty.pt", b""), "-s", "2,8"], 2, "model file is empty")


def model_unreadable(tmp, fac):
    path = _write(tmp / "locked.pt", torchscript_bytes())
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as root: chmod 000 does not make the file unreadable")
    return Case([path, "-s", "2,8"], 2, ["cannot read model file", "ermission denied"])


def model_random_bytes(tmp, fac):
    data = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    return Case([_write(tmp / "random.bin", b"\x13" + data), "-s", "2,8"], 2, "unknown model format")


def torchscript_truncated(tmp, fac):
    data = torchscript_bytes()
    return Case([_write(tmp / "cut.ts", data[: len(data) // 2]), "-s", "2,8"], 2, ["damaged zip", "cut.ts"])


def export_truncated(tmp, fac):
    data = export_bytes()
    return Case([_write(tmp / "cut.pt2", data[: len(data) // 2]), "-s", "2,8"], 2, ["damaged zip", "cut.pt2"])


def onnx_truncated(tmp, fac):
    data = onnx_bytes()
    return Case([_write(tmp / "cut.onnx", data[: len(data) // 2]), "-s", "2,8"], 2, "cut.onnx")


def onnx_invalid(tmp, fac):
    return Case([_write(tmp / "junk.onnx", b"not a protobuf \x00\xff\xfe" * 4), "-s", "2,8"], 2, "junk.onnx")


def onnx_external_missing(tmp, fac):
    path = save_onnx_external(tmp / "m")
    (tmp / "m" / "weights.bin").unlink()
    return Case([path, "-s", "2,8"], 2, [f"{path}: tensor 'w1'", "weights.bin", "not found"])


def onnx_external_escapes(tmp, fac):
    path = save_onnx_external(tmp / "m", "../x")
    (tmp / "x").write_bytes((tmp / "m" / "weights.bin").read_bytes())
    return Case([path, "-s", "2,8"], 2, [str(path), "'../x' escapes", "inside the model's directory"])


def unknown_zip(tmp, fac):
    import zipfile

    path = tmp / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return Case([path, "-s", "2,8"], 2, "not a PyTorch model")


def state_dict_mismatch(tmp, fac):
    path = tmp / "w.pt"
    state = nn.Sequential(nn.Linear(8, 4)).state_dict() | {"extra.weight": torch.zeros(1)}
    torch.save(state, path)
    return Case([path, "--factory", f"{fac}:build", "-s", "2,8"], 2,
                ["missing keys: 2.weight, 2.bias", "unexpected keys: extra.weight", "0.weight (4, 8) vs (16, 8)"])


def factory_syntax_error(tmp, fac):
    bad = tmp / "broken.py"
    bad.write_text("def build(:\n    pass\n")
    return Case([f"{bad}:build", "-s", "2,8"], 2, ["broken.py", "SyntaxError"])


def factory_function_missing(tmp, fac):
    return Case([f"{fac}:nope", "-s", "2,8"], 2, "has no function 'nope'")


def factory_raises(tmp, fac):
    return Case([f"{fac}:raises", "-s", "2,8"], 2, ["raised RuntimeError", "factory exploded on purpose"])


def factory_not_module(tmp, fac):
    return Case([f"{fac}:not_a_model", "-s", "2,8"], 2, "returned int, not a torch.nn.Module")


def input_missing(tmp, fac):
    return Case([f"{fac}:build", "-i", tmp / "nope.pt"], 2, ["input file not found", "nope.pt"])


def input_wrong_shape(tmp, fac):
    return Case([f"{fac}:build", "-i", _x(tmp, torch.randn(4, 5))], 3,
                ["forward pass raised", "expects 8 features", "(4, 5) float32"])


def input_wrong_dtype(tmp, fac):
    return Case([f"{fac}:build", "-i", _x(tmp, torch.ones(4, 8, dtype=torch.int64))], 3,
                ["forward pass raised", "expects 8 features in its last dimension, float32; the input was (4, 8) int64"])


def input_wrong_count(tmp, fac):
    return Case([f"{fac}:build", "-i", _x(tmp, (torch.randn(4, 8), torch.randn(4, 8)))], 2,
                ["inputs do not match the model's forward arguments", "takes 2 positional arguments but 3 were given"])


def input_empty_tensor(tmp, fac):
    return Case([f"{fac}:build", "-i", _x(tmp, torch.zeros(0, 8))], 2, "empty tensor")


def input_object_array(tmp, fac):
    path = tmp / "x.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return Case([f"{fac}:build", "-i", path], 2, ["cannot read input file", "x.npy"])


def input_garbage(tmp, fac):
    return Case([f"{fac}:build", "-i", _write(tmp / "x.pt", b"garbage")], 2, ["cannot read input file", "x.pt", "safe loader refused", "weights_only=True"])


def labels_out_of_range(tmp, fac):
    x = _x(tmp, torch.randn(4, 8))
    y = _x(tmp, torch.tensor([0, 1, 2, 9]), "y.pt")
    return Case([f"{fac}:build", "-i", x, "-t", y], 2, "class targets must lie in [0, 2]")


def labels_wrong_count(tmp, fac):
    x = _x(tmp, torch.randn(4, 8))
    y = _x(tmp, torch.tensor([0, 1]), "y.pt")
    return Case([f"{fac}:build", "-i", x, "-t", y], 2, "targets do not fit the output (4, 3)")


def no_parameters(tmp, fac):
    return Case([f"{fac}:no_parameters", "-s", "2,8"], 3, "the model has no parameters")


def frozen(tmp, fac):
    return Case([f"{fac}:frozen", "-s", "2,8"], 3, ["no gradient path", "requires_grad"])


def integer_output(tmp, fac):
    return Case([f"{fac}:int_output", "-s", "2,8"], 3, ["torch.int64", "no gradient"])


def cuda_unavailable(tmp, fac):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    return Case([f"{fac}:build", "-s", "2,8", "--device", "cuda"], 2, ["CUDA is not available", "--device cpu"])


def unknown_device(tmp, fac):
    return Case([f"{fac}:build", "-s", "2,8", "--device", "tpu9"], 2, "unknown device 'tpu9'")


def unwritable_output(tmp, fac):
    return Case([f"{fac}:build", "-s", "2,8", "-o", tmp / "no" / "such" / "dir" / "r.json"], 2, "does not exist")


def output_is_directory(tmp, fac):
    return Case([f"{fac}:build", "-s", "2,8", "-o", tmp], 2, "is a directory")


# The range message is typer's: click's wording ("x>=1") up to 0.28, pydantic's from 0.29 (pyproject pins <0.29).
AT_LEAST_1 = ("x>=1", "greater than or equal to 1")


def negative_batch_size(tmp, fac):
    return Case([f"{fac}:build", "-s", "2,8", "--batch-size", "-1"], 2, ["'--batch-size'", AT_LEAST_1])


def zero_batches(tmp, fac):
    return Case([f"{fac}:build", "-s", "2,8", "--batches", "0"], 2, ["'--batches'", AT_LEAST_1])


def unknown_fail_on(tmp, fac):
    return Case([f"{fac}:build", "-s", "2,8", "--fail-on", "vanishing,typo"], 2, ["unknown finding kind", "'typo'"])


def unknown_option_value(tmp, fac):
    return Case([f"{fac}:build", "-s", "2,8", "--loss", "hinge"], 2, ["--loss", "hinge"])


def unknown_option(tmp, fac):
    return Case([f"{fac}:build", "-s", "2,8", "--no-such-flag"], 2, "--no-such-flag")


def malformed_shape(text):
    def build(tmp, fac):
        return Case([f"{fac}:build", "-s", text], 2, "malformed --input-shape")

    return build


def input_shape_too_large(tmp, fac):
    return Case([f"{fac}:build", "-s", "99999999999999,8"], 2, ["cannot create a random float32 input of shape 99999999999999,8",
                                                               "smaller --input-shape"])


def input_range_beyond_dtype(tmp, fac):
    return Case([f"{fac}:build", "-s", "4,8", "--input-range", "0,99999999999999999999"], 2,
                "cannot create a random int64 input of shape 4,8 in [0, 99999999999999999999)")


def malformed_range(tmp, fac):
    return Case([f"{fac}:build", "-s", "2,8", "--input-range", "5"], 2, "malformed --input-range")


def unknown_dtype(tmp, fac):
    return Case([f"{fac}:build", "-s", "2,8", "--dtype", "float7"], 2, "unknown --dtype 'float7'")


def malformed_threshold(tmp, fac):
    return Case([f"{fac}:build", "-s", "2,8", "--threshold", "dead_ratio"], 2, "malformed --threshold")


def input_and_shape(tmp, fac):
    return Case([f"{fac}:build", "-s", "2,8", "-i", _x(tmp, torch.randn(2, 8))], 2, "not both")


def no_input(tmp, fac):
    return Case([f"{fac}:build"], 2, ["no input data", "--input-shape"])


def state_dict_without_factory(tmp, fac):
    path = tmp / "w.pt"
    torch.save(nn.Linear(8, 3).state_dict(), path)
    return Case([path, "-s", "2,8"], 2, "--factory")


CASES: dict[str, Callable] = {
    "model-missing": model_missing,
    "model-directory": model_directory,
    "model-empty": model_empty,
    "model-unreadable": model_unreadable,
    "model-random-bytes": model_random_bytes,
    "torchscript-truncated": torchscript_truncated,
    "export-truncated": export_truncated,
    "onnx-truncated": onnx_truncated,
    "onnx-invalid": onnx_invalid,
    "onnx-external-missing": onnx_external_missing,
    "onnx-external-escapes": onnx_external_escapes,
    "unknown-zip": unknown_zip,
    "state-dict-mismatch": state_dict_mismatch,
    "state-dict-without-factory": state_dict_without_factory,
    "factory-syntax-error": factory_syntax_error,
    "factory-function-missing": factory_function_missing,
    "factory-raises": factory_raises,
    "factory-not-module": factory_not_module,
    "input-missing": input_missing,
    "input-wrong-shape": input_wrong_shape,
    "input-wrong-dtype": input_wrong_dtype,
    "input-wrong-count": input_wrong_count,
    "input-empty-tensor": input_empty_tensor,
    "input-object-array": input_object_array,
    "input-garbage": input_garbage,
    "labels-out-of-range": labels_out_of_range,
    "labels-wrong-count": labels_wrong_count,
    "no-parameters": no_parameters,
    "frozen": frozen,
    "integer-output": integer_output,
    "cuda-unavailable": cuda_unavailable,
    "unknown-device": unknown_device,
    "output-unwritable": unwritable_output,
    "output-is-directory": output_is_directory,
    "negative-batch-size": negative_batch_size,
    "zero-batches": zero_batches,
    "unknown-fail-on": unknown_fail_on,
    "unknown-loss": unknown_option_value,
    "unknown-option": unknown_option,
    "malformed-range": malformed_range,
    "input-shape-too-large": input_shape_too_large,
    "input-range-beyond-dtype": input_range_beyond_dtype,
    "unknown-dtype": unknown_dtype,
    "malformed-threshold": malformed_threshold,
    "input-and-shape": input_and_shape,
    "no-input": no_input,
    **{f"malformed-shape[{s!r}]": malformed_shape(s) for s in ("8,x", "0,8", "", ",", "8,-3", "1e3,2", "8;8")},
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_and_a_documented_exit_code(invoke, tmp_path, name):
    factory = write_factory(tmp_path)
    case = CASES[name](tmp_path, factory)
    result = invoke("analyze", *case.args)
    assert result.exit_code == case.code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip("\n").splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gradcheck: error:"), result.stderr
    for part in [case.message] if isinstance(case.message, str) else case.message:
        alternatives = part if isinstance(part, tuple) else (part,)  # a tuple: any one of its wordings
        assert any(text in lines[0] for text in alternatives), lines[0]
    assert result.stdout == ""


def test_nan_in_the_input_is_a_nonfinite_finding_not_a_crash(invoke, tmp_path):
    """Decision: NaN data is something to diagnose (exit 1 through the default fail set), not an error."""
    factory = write_factory(tmp_path)
    x = torch.randn(16, 8)
    x[3, 2] = float("nan")
    result = invoke("analyze", f"{factory}:build", "-i", _x(tmp_path, x), "-F", "json")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    report = json.loads(result.stdout)
    kinds = {f["kind"] for f in report["findings"]}
    assert "nonfinite" in kinds
    assert report["summary"]["first_nonfinite_layer"] == "0"
    assert invoke("analyze", f"{factory}:build", "-i", _x(tmp_path, x), "--fail-on", "none", "-q").exit_code == 0


def test_unwritable_output_is_refused_before_the_model_is_even_loaded(invoke, tmp_path):
    factory = write_factory(tmp_path)
    started = time.perf_counter()
    result = invoke("analyze", f"{factory}:marked", "-s", "2,8", "-o", tmp_path / "missing" / "r.json")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "factory-was-called").exists()  # the factory writes it when called
    assert time.perf_counter() - started < 5
    ok = invoke("analyze", f"{factory}:marked", "-s", "2,8", "-q")  # the marker does work when it runs
    assert ok.exit_code == 0 and (tmp_path / "factory-was-called").exists()
