"""Conversions between ONNX tensor types and torch dtypes / tensors."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, numpy_helper

#: ONNX elem_type -> torch dtype, for every type torch can compute with.
ONNX_TO_TORCH: dict[int, torch.dtype] = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.INT8: torch.int8,
    TensorProto.INT16: torch.int16,
    TensorProto.INT32: torch.int32,
    TensorProto.INT64: torch.int64,
    TensorProto.UINT8: torch.uint8,
    TensorProto.UINT16: torch.uint16,
    TensorProto.UINT32: torch.uint32,
    TensorProto.UINT64: torch.uint64,
    TensorProto.BOOL: torch.bool,
    TensorProto.COMPLEX64: torch.complex64,
    TensorProto.COMPLEX128: torch.complex128,
}
TORCH_TO_ONNX: dict[torch.dtype, int] = {v: k for k, v in ONNX_TO_TORCH.items()}

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class UnsupportedDtypeError(TypeError):
    """Raised for ONNX element types torch cannot represent (string, float8, int4, ...)."""


def onnx_dtype_name(elem_type: int) -> str:
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return str(elem_type)


def to_torch_dtype(elem_type: int) -> torch.dtype:
    """Map an ONNX elem_type to torch, raising UnsupportedDtypeError when impossible."""
    try:
        return ONNX_TO_TORCH[elem_type]
    except KeyError:
        raise UnsupportedDtypeError(f"ONNX data type {onnx_dtype_name(elem_type)} is not supported") from None


def is_float(t: torch.Tensor) -> bool:
    return t.dtype in FLOAT_DTYPES


def numpy_to_torch(arr: np.ndarray) -> torch.Tensor:
    """Convert a numpy array (including ml_dtypes bfloat16) to a fresh torch tensor.

    A copy is always made: arrays from numpy_helper are often read-only views of
    protobuf bytes, and torch must own memory it may hand out as a Parameter.
    """
    if arr.dtype.name == "bfloat16":
        return torch.from_numpy(np.array(arr, copy=True).view(np.uint16)).view(torch.bfloat16)  # keeps 0-d shape
    if arr.dtype.kind in "OSU":
        raise UnsupportedDtypeError("string tensors are not supported")
    if arr.dtype.name not in {
        "float16", "float32", "float64", "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128",
    }:
        raise UnsupportedDtypeError(f"numpy dtype {arr.dtype} is not supported")
    return torch.from_numpy(np.array(arr, copy=True))


def torch_to_numpy(t: torch.Tensor) -> np.ndarray:
    """Inverse of numpy_to_torch (bfloat16 comes back as ml_dtypes.bfloat16 when available)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes  # shipped as an onnx dependency

        return t.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def tensor_proto_to_torch(tp: onnx.TensorProto, base_dir: str | None = None) -> torch.Tensor:
    """Decode a TensorProto (raw, typed-field or already-loaded external data) into torch."""
    to_torch_dtype(tp.data_type)  # fail early with a clear message for exotic types
    arr = numpy_helper.to_array(tp, base_dir or "")
    return numpy_to_torch(arr)


def sparse_to_dense(sp: onnx.SparseTensorProto, base_dir: str | None = None) -> torch.Tensor:
    """Densify a sparse initializer (values scattered into zeros by linear or COO indices)."""
    values = tensor_proto_to_torch(sp.values, base_dir)
    indices = tensor_proto_to_torch(sp.indices, base_dir).long()
    dims = list(sp.dims)
    dense = torch.zeros(int(np.prod(dims)) if dims else 1, dtype=values.dtype)
    if indices.dim() == 2:  # COO [nnz, rank] -> linear
        strides = torch.tensor([int(np.prod(dims[i + 1:])) for i in range(len(dims))], dtype=torch.long)
        indices = (indices * strides).sum(-1)
    dense[indices.reshape(-1)] = values.reshape(-1)
    return dense.reshape(dims)
