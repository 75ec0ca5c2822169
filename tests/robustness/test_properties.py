"""Property-based tests: the parsers, the data loader and the JSON encoder never fail with anything
but the documented error (a GradcheckError subclass), whatever they are given."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradcheck_cli.errors import InputError, UsageError
from gradcheck_cli.analysis.sample import Sample, load_sample, load_target, parse_range, parse_shape
from gradcheck_cli.analysis.options import FINDING_KINDS, GATE_TOKENS, parse_fail_on
from gradcheck_cli.report.codec import encode
from gradcheck_cli.report.model import Report

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.lists(st.integers(1, 10**6), min_size=1, max_size=6).map(tuple)


@FAST
@given(shapes, st.sampled_from([",", "x", ", ", " x "]), st.booleans())
def test_parse_shape_round_trips_valid_shapes(shape, sep, pad):
    text = sep.join(map(str, shape))
    assert parse_shape(f"  {text} " if pad else text) == shape


@FAST
@given(st.text())
def test_parse_shape_accepts_positive_ints_or_raises_usage_error(text):
    try:
        shape = parse_shape(text)
    except UsageError as exc:
        assert "--input-shape" in str(exc)
    else:
        assert shape and all(isinstance(d, int) and d >= 1 for d in shape)


@FAST
@given(st.from_regex(r"\A[0-9x,\- ]{0,12}\Z"))
def test_parse_shape_on_near_miss_text(text):
    try:
        shape = parse_shape(text)
    except UsageError:
        return
    assert shape == tuple(int(p) for p in text.strip().replace("x", ",").split(","))


@FAST
@given(st.integers(-10**9, 10**9), st.integers(-10**9, 10**9))
def test_parse_range_round_trips(low, high):
    text = f"{low},{high}"
    if high > low:
        assert parse_range(text) == (low, high)
    else:
        with pytest.raises(UsageError):
            parse_range(text)


@FAST
@given(st.text())
def test_parse_range_never_raises_anything_else(text):
    try:
        low, high = parse_range(text)
    except UsageError as exc:
        assert "--input-range" in str(exc)
    else:
        assert isinstance(low, int) and isinstance(high, int) and high > low


@FAST
@given(st.lists(st.sampled_from(FINDING_KINDS), min_size=1), st.sampled_from([",", ", ", " ,"]))
def test_parse_fail_on_round_trips_kind_lists(kinds, sep):
    assert parse_fail_on(sep.join(kinds)) == frozenset(kinds)


@FAST
@given(st.one_of(st.text(), st.lists(st.sampled_from([*FINDING_KINDS, *GATE_TOKENS, "all", "none", "", " "])).map(",".join)))
def test_parse_fail_on_returns_known_kinds_or_raises_usage_error(text):
    try:
        kinds = parse_fail_on(text)
    except UsageError as exc:
        assert "unknown finding kind" in str(exc)
    else:
        assert isinstance(kinds, frozenset) and kinds <= set(FINDING_KINDS) | set(GATE_TOKENS)  # severities gate too


# --- load_sample on arbitrary file contents ------------------------------------------------------

array_dtypes = st.one_of(
    hnp.scalar_dtypes(),  # bool, ints, uints, floats, complex, datetime64, timedelta64
    hnp.byte_string_dtypes(), hnp.unicode_string_dtypes(),
    st.just(np.dtype(object)),
)
arrays = array_dtypes.flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
                          elements=st.none() if dt == object else None)
)
tensor_dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int8,
                                 torch.uint8, torch.bool, torch.complex64])
tensors = st.builds(
    lambda shape, dtype: torch.zeros(shape, dtype=dtype),
    st.lists(st.integers(0, 3), max_size=3), tensor_dtypes,
)
leaves = st.one_of(tensors, st.integers(-2**70, 2**70), st.floats(), st.booleans(), st.none(), st.text(max_size=5),
                   st.binary(max_size=5))
keys = st.one_of(st.text(max_size=6), st.sampled_from(["input", "inputs", "target", "targets", "labels", "arr_0", "arr_x"]),
                 st.integers(-3, 3))
pt_contents = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=3), st.lists(inner, max_size=3).map(tuple),
                                                           st.dictionaries(keys, inner, max_size=3)), max_leaves=6)
npz_keys = st.one_of(st.sampled_from(["arr_0", "arr_1", "arr_x", "arr_", "x", "input"]), st.from_regex(r"\A[a-z_0-9]{1,6}\Z"))


def _check(path: Path) -> None:
    for loader in (load_sample, load_target):
        try:
            result = loader(path)
        except InputError as exc:
            assert str(path) in str(exc)
        else:
            if loader is load_sample:
                assert isinstance(result, Sample)
                assert all(isinstance(t, torch.Tensor) for t in result.tensors())
            else:
                assert isinstance(result, torch.Tensor)


@FAST
@given(arrays)
def test_load_sample_npy(array):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, array, allow_pickle=True)
        _check(path)


@FEW
@given(st.dictionaries(npz_keys, arrays, min_size=1, max_size=3))
def test_load_sample_npz(arrays_by_name):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npz"
        np.savez(path, **arrays_by_name)
        _check(path)


@FAST
@given(pt_contents)
def test_load_sample_pt(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.pt"
        torch.save(content, path)
        _check(path)


# --- the JSON encoder --------------------------------------------------------------------------

any_float = st.floats(allow_nan=True, allow_infinity=True)


def _strict_loads(text: str):
    def refuse(token):
        raise AssertionError(f"invalid JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


@FAST
@given(st.recursive(st.one_of(any_float, st.integers(), st.text(max_size=3), st.none(), st.booleans()),
                    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                    max_leaves=10))
def test_encode_any_nested_value_gives_strict_json(value):
    encoded = encode(value)
    text = json.dumps(encoded, allow_nan=False)
    assert _strict_loads(text) == encoded


@FEW
@given(st.builds(Report))
def test_report_to_json_is_strict_json_for_any_floats(report):
    text = report.to_json()
    parsed = _strict_loads(text)
    assert parsed == report.to_dict()
    assert parsed["schema_version"] == report.schema_version
    for key, value in _walk(parsed):  # every non-finite float became null plus a "<key>_nonfinite" flag
        if key.endswith("_nonfinite") and isinstance(value, str) and value in ("nan", "inf", "-inf"):
            assert key.removesuffix("_nonfinite") in _keys_with_null(parsed)
    if isinstance(report.summary.exit_code, int):
        assert parsed["summary"]["exit_code"] == report.summary.exit_code


def _walk(node, key=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)


def _keys_with_null(node) -> set[str]:
    return {k for k, v in _walk(node) if v is None}


@FAST
@given(any_float)
def test_round_keeps_finite_floats_finite(value):
    encoded = encode({"v": value})
    if math.isfinite(value):
        assert math.isfinite(encoded["v"]) and math.isclose(encoded["v"], value, rel_tol=1e-6, abs_tol=0)
    else:
        assert encoded["v"] is None and encoded["v_nonfinite"] in ("nan", "inf", "-inf")
