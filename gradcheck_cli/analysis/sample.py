"""The data sample, every way it is made: loaded from a file, given as tensors, generated at random (from
shapes, a model's stored examples or its format's declared inputs), then split into batches and moved."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gradcheck_cli.analysis.options import DataSpec
from gradcheck_cli.errors import InputError, UsageError, first_line

if TYPE_CHECKING:  # pragma: no cover
    from gradcheck_cli.loading.base import LoadedModel

DTYPES = {
    "float32": torch.float32, "float": torch.float32, "float64": torch.float64, "double": torch.float64,
    "float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32, "bool": torch.bool,
}


@dataclass
class Sample:
    """Positional and keyword model inputs plus optional targets; dim 0 of each tensor is the batch."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    target: torch.Tensor | None = None
    part: tuple[int, int] | None = None
    """In a distributed run: (offset, total) -- these are samples ``offset ..`` of a global batch of ``total``."""
    notes: list[str] = field(default_factory=list)
    """What was done to the inputs as given (for the report; the batches cut from it carry none)."""

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (*self.args, *self.kwargs.values()) if isinstance(t, torch.Tensor)]

    def size(self) -> int | None:
        """Samples in the batch (dim 0 of the first tensor input)."""
        for t in self.tensors():
            if t.dim() > 0:
                return t.shape[0]
        return None

    def batches(self, batch_size: int | None, count: int) -> list[Sample]:
        """Up to ``count`` consecutive slices of ``batch_size`` samples (the whole sample if None)."""
        total = self.size()
        if batch_size is None or total is None or batch_size >= total:
            return [self]
        starts = range(0, total, batch_size)
        return [self._slice(s, min(s + batch_size, total)) for s in list(starts)[:count]]

    def shard(self, rank: int, world: int) -> Sample:
        """This process's contiguous share of the batch (the first ``total % world`` ranks take one more)."""
        total = self.size()
        if total is None or world == 1:
            return self
        if total < world:
            raise InputError(f"a batch of {total} sample(s) cannot be split across {world} processes",
                             hint="give a global batch of at least one sample per process")
        base, extra = divmod(total, world)
        start = rank * base + min(rank, extra)
        stop = start + base + (1 if rank < extra else 0)
        part = self._slice(start, stop)
        part.part = (start, total)
        return part

    def _slice(self, start: int, stop: int) -> Sample:
        total = self.size()

        def cut(value: Any) -> Any:
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == total:
                return value[start:stop]
            return value

        return self.map(cut)

    def to(self, device: torch.device) -> Sample:
        def move(value: Any) -> Any:
            if not isinstance(value, torch.Tensor):
                return value
            value = value.to(device)
            return value.clone() if value.is_inference() else value  # made under inference_mode: autograd cannot save it

        return self.map(move)

    def map(self, fn: Callable[[Any], Any], *, target: bool = True) -> Sample:
        """The sample with ``fn`` applied to every input, and to the target unless ``target`` is False; the part
        is kept, the notes are not."""
        return Sample(tuple(fn(a) for a in self.args), {k: fn(v) for k, v in self.kwargs.items()},
                      fn(self.target) if target else self.target, self.part)


def parse_shape(text: str) -> tuple[int, ...]:
    """``"8,3,32,32"`` (or ``8x3x32x32``) -> (8, 3, 32, 32); every dimension a positive integer."""
    parts = [p.strip() for p in text.strip().replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"malformed --input-shape {text!r}", hint="use comma-separated positive integers, e.g. 8,3,32,32") from None
    if not shape or any(d < 1 for d in shape):
        raise UsageError(f"malformed --input-shape {text!r}", hint="every dimension must be a positive integer, e.g. 8,3,32,32")
    return shape


def parse_range(text: str) -> tuple[int, int]:
    """``"0,50000"`` -> (0, 50000): the half-open range of random integer inputs (token ids)."""
    try:
        low, high = (int(p) for p in text.split(","))
    except ValueError:
        raise UsageError(f"malformed --input-range {text!r}", hint="use LOW,HIGH, e.g. 0,50000") from None
    if high <= low:
        raise UsageError(f"--input-range {text!r} is empty", hint="HIGH must be greater than LOW")
    return low, high


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name.lower()]
    except KeyError:
        raise UsageError(f"unknown --dtype {name!r}", hint=f"use one of: {', '.join(DTYPES)}") from None


def random_sample(
    shapes: list[tuple[int, ...]], dtype: torch.dtype, value_range: tuple[int, int] | None, seed: int
) -> Sample:
    """Seeded N(0, 1) floats, or uniform integers in ``value_range`` (for embeddings)."""
    generator = torch.Generator().manual_seed(seed)
    if value_range is not None and dtype.is_floating_point:
        dtype = torch.int64
    tensors = []
    for shape in shapes:
        try:
            if dtype.is_floating_point:
                tensors.append(torch.randn(shape, generator=generator, dtype=torch.float32).to(dtype))
            else:
                low, high = value_range or (0, 2)
                tensors.append(torch.randint(low, high, shape, generator=generator, dtype=dtype))
        except (RuntimeError, ValueError, OverflowError) as exc:  # too large to allocate; range beyond the dtype
            first = first_line(exc)
            raise InputError(
                f"cannot create a random {str(dtype).removeprefix('torch.')} input of shape {','.join(map(str, shape))}"
                + (f" in [{value_range[0]}, {value_range[1]})" if value_range and not dtype.is_floating_point else "")
                + f": {first}",
                hint="use a smaller --input-shape, or an --input-range that fits --dtype",
            ) from None
    return Sample(tuple(tensors))


def like_examples(examples: tuple[Any, ...], seed: int) -> Sample:
    """Random inputs with the shapes and dtypes of a model's stored example inputs."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for ex in examples:
        if not isinstance(ex, torch.Tensor):
            out.append(ex)
        elif ex.is_floating_point():
            out.append(torch.randn(ex.shape, generator=generator).to(ex.dtype))
        else:
            high = int(ex.max()) + 1 if ex.numel() else 2
            out.append(torch.randint(0, max(high, 2), ex.shape, generator=generator, dtype=ex.dtype))
    return Sample(tuple(out))


def load_sample(path: Path) -> Sample:
    """``.pt`` (tensor, tuple/list, dict, or dict with ``input``/``target``), ``.npy`` or ``.npz``."""
    import numpy as np

    data = _read(path)
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return Sample((_as_tensor(data, path),))
    if isinstance(data, (tuple, list)):
        return Sample(tuple(_as_tensor(v, path) for v in data))
    if isinstance(data, dict):
        if "input" in data or "inputs" in data:
            inner = data.get("input", data.get("inputs"))
            target = data.get("target", data.get("targets", data.get("labels")))
            sample = load_value(inner, path)
            sample.target = None if target is None else _as_tensor(target, path)
            return sample
        _check_names(data, path)
        if all(k.startswith("arr_") and k[4:].isdigit() for k in data):  # np.savez positional arrays
            return Sample(tuple(_as_tensor(data[k], path) for k in sorted(data, key=lambda k: int(k[4:]))))
        return Sample((), {k: _as_tensor(v, path) for k, v in data.items()})
    raise InputError(f"{path} holds a {type(data).__name__}", hint="save a tensor, a tuple of tensors or a dict")


def load_value(value: Any, path: Path) -> Sample:
    if isinstance(value, dict):
        _check_names(value, path)
        return Sample((), {k: _as_tensor(v, path) for k, v in value.items()})
    if isinstance(value, (tuple, list)):
        return Sample(tuple(_as_tensor(v, path) for v in value))
    return Sample((_as_tensor(value, path),))


def _check_names(data: dict, path: Path) -> None:
    """Dict keys become keyword-argument names."""
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise InputError(f"{path} holds a dict with non-string key {bad[0]!r}",
                         hint="keys are the model's argument names; use a tuple/list for positional inputs")


def load_target(path: Path) -> torch.Tensor:
    data = _read(path)
    if isinstance(data, dict) and len(data) == 1:
        data = next(iter(data.values()))
    if isinstance(data, dict) and ("target" in data or "labels" in data):
        data = data.get("target", data.get("labels"))
    return _as_tensor(data, path)


def _as_tensor(value: Any, path: Path) -> torch.Tensor:
    import numpy as np

    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise InputError(f"{path} holds an object array", hint="save numeric arrays only")
        if not value.dtype.isnative:  # big-endian data: torch reads native byte order only
            value = value.astype(value.dtype.newbyteorder("="))
        try:
            return torch.from_numpy(np.ascontiguousarray(value))
        except TypeError:
            raise InputError(f"{path} holds an array of dtype {value.dtype}, which torch cannot use",
                             hint="save numeric or bool arrays") from None
    if isinstance(value, (int, float)):
        try:
            return torch.tensor(value)
        except (RuntimeError, OverflowError, ValueError):
            raise InputError(f"{path} holds the number {value}, which does not fit a tensor") from None
    raise InputError(f"{path} holds a {type(value).__name__} where a tensor was expected")


def _unpickler_detail(exc: BaseException) -> str:
    """The reason inside torch's long weights_only message (``Unsupported global: GLOBAL io.open``...)."""
    text = " ".join(str(exc).split())
    _, found, detail = text.partition("WeightsUnpickler error:")
    detail = detail.split(". Please", 1)[0].split(" Check the documentation", 1)[0].strip().rstrip(".")
    return (detail or "not a tensor file") if found else (text.split(". ", 1)[0] or type(exc).__name__)


def _read(path: Path) -> Any:
    import numpy as np

    if not path.exists():
        raise InputError(f"input file not found: {path}")
    if path.is_dir():
        raise InputError(f"input path is a directory: {path}", hint="pass a .pt, .npy or .npz file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {k: archive[k] for k in archive.files}
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's text suggests weights_only=False: never for data
        raise InputError(
            f"cannot read input file {path}: the safe loader refused it ({_unpickler_detail(exc)})",
            hint="inputs are loaded with weights_only=True: save only tensors, tuples, lists and dicts, or use .npy/.npz",
        ) from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        first = first_line(exc)
        raise InputError(
            f"cannot read input file {path}: {first}", hint="inputs must be .pt (tensors only), .npy or .npz"
        ) from None


def _numpy_precision(sample: Sample, loaded: LoadedModel, name: str) -> Sample:
    """float64 arrays from a numpy file, for a model whose floating parameters are all of one narrower dtype, cast
    to it (with a note): numpy makes float64 by default (``np.random.randn``, ``np.array([0.5])``), so a batch
    saved from it failed in the first layer (``mat1 and mat2 must have the same dtype``). Integer arrays (token
    ids) and models with float64 parameters are left as they are."""
    if not any(t.dtype == torch.float64 for t in sample.tensors()) or not hasattr(loaded.module, "parameters"):
        return sample
    dtypes = {p.dtype for p in loaded.module.parameters() if p.is_floating_point()}
    if len(dtypes) != 1 or torch.float64 in dtypes:
        return sample
    (dtype,) = dtypes

    def cast(value: Any) -> Any:
        return value.to(dtype) if isinstance(value, torch.Tensor) and value.dtype == torch.float64 else value

    cast_sample = sample.map(cast, target=False)
    cast_sample.notes = [*sample.notes, f"{name}: its float64 arrays were cast to the model's "
                                        f"{str(dtype).removeprefix('torch.')} (numpy's default dtype is float64)"]
    return cast_sample


def resolve_sample(data: DataSpec, loaded: LoadedModel, seed: int, batch_size: int | None = None) -> Sample:
    """Inputs from the file or objects given, else random data of the given shapes, else of the model's
    own: its stored example inputs, or what its format can make (an ONNX graph's declared shapes)."""
    given = data.inputs
    if isinstance(given, Sample):
        sample = given
    elif isinstance(given, (str, Path)):
        sample = load_sample(Path(given))
        if Path(given).suffix.lower() in (".npy", ".npz"):
            sample = _numpy_precision(sample, loaded, Path(given).name)
    elif isinstance(given, torch.Tensor):
        sample = Sample((given,))
    elif isinstance(given, (tuple, list)):
        sample = Sample(tuple(given))
    elif isinstance(given, dict):
        sample = Sample((), dict(given))
    elif data.input_shapes:
        sample = random_sample(list(data.input_shapes), parse_dtype(data.dtype), data.input_range, seed)
    elif loaded.example_inputs:
        sample = like_examples(loaded.example_inputs, seed)
    elif loaded.make_inputs is not None:
        sample = Sample(loaded.make_inputs(seed, batch_size, data.input_range))
    else:
        raise InputError("no input data", hint="pass --input FILE or --input-shape N,C,H,W")
    if not sample.tensors():
        raise InputError("the input sample holds no tensors")
    if any(t.numel() == 0 for t in sample.tensors()):
        raise InputError("the input sample holds an empty tensor", hint="give at least one sample")
    if data.target is not None:
        sample.target = load_target(Path(data.target)) if isinstance(data.target, (str, Path)) else data.target
    return sample
