"""Golden JSON reports: every example model in every format it can be saved in, pinned.

These pin behaviour through refactors: a change that moves any number, name, finding or message
shows up as a difference here. Names, kinds, flags and the words of every message must match
exactly; numbers to :data:`REL` (float32 kernels sum in other orders on other CPUs), see
:func:`differences`. Regenerate on purpose with ``GRADCHECK_UPDATE_GOLDEN=1 pytest tests/test_golden_reports.py``
and review the diff like code.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).resolve().parent / "golden" / "reports"
UPDATE = bool(os.environ.get("GRADCHECK_UPDATE_GOLDEN"))

MODELS = {  # factory name -> input shape (small batches: these are about exactness, not statistics)
    "deep_sigmoid_mlp": (32, 64),
    "bad_relu_mlp": (32, 256),
    "he_relu_mlp": (32, 256),
    "small_resnet": (4, 3, 16, 16),
}
FORMATS = ("module", "torchscript", "export", "onnx")


def _save(model: torch.nn.Module, fmt: str, x: torch.Tensor, folder: Path):  # noqa: ANN202
    if fmt == "module":
        return model
    path = folder / {"torchscript": "model.ts", "export": "model.pt2", "onnx": "model.onnx"}[fmt]
    if fmt == "torchscript":
        torch.jit.save(torch.jit.trace(model, x), path)
    elif fmt == "export":
        torch.export.save(torch.export.export(model, (x,)), path)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), dynamo=False)
    return str(path)


def report_document(name: str, fmt: str, folder: Path) -> str:
    """The JSON the tool writes for one example model in one format, with the temp path normalised."""
    import models

    from gradcheck_cli import analyze

    x = torch.randn(*MODELS[name], generator=torch.Generator().manual_seed(0))
    model = getattr(models, name)()
    document = json.loads(analyze(_save(model, fmt, x, folder), x).to_json())
    document["model"]["source"] = f"<{fmt}>"
    _drop_environment(document["run"])
    return json.dumps(document, indent=2) + "\n"


ENVIRONMENT = ("threads", "torch_version", "python_version", "cuda_version", "device_name")
"""Run fields that describe the machine, not the model: left out of the goldens so they stay machine-independent
(checked here for presence and type instead)."""


def _drop_environment(run: dict) -> None:
    assert isinstance(run.pop("threads"), int)
    assert run.pop("torch_version") == torch.__version__
    assert isinstance(run.pop("python_version"), str)
    assert run.pop("cuda_version") == torch.version.cuda
    assert isinstance(run.pop("device_name"), (str, type(None)))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_report_matches_golden(name: str, fmt: str, tmp_path: Path) -> None:
    text = report_document(name, fmt, tmp_path)
    golden = GOLDEN / f"{name}.{fmt}.json"
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden.name}: run with GRADCHECK_UPDATE_GOLDEN=1"
    changed = differences(json.loads(text), json.loads(golden.read_text()))
    assert not changed, (f"{golden.name} changed: review, then regenerate with GRADCHECK_UPDATE_GOLDEN=1\n"
                         + "\n".join(changed[:20]))


REL = 1e-4
"""Numbers must agree to this relative difference. float32 kernels differ between CPUs (AVX-512 and
AVX2 builds sum in other orders), which moved the 6th-7th digit of the statistics: at most 3e-6
across these 16 reports between two VMs. A change in what is measured moves far more."""
PRINTED = 1e-2
"""A number printed in a message (3 significant digits) may flip its last digit on such a change."""
RESOLUTION = 1e-6
"""An activation statistic may differ by this share of the activation's scale (|mean| + std): a mean
that is zero up to rounding (after BatchNorm: 2e-9 on one VM, 6e-10 on another), or an
input-dependent part that has collapsed to float32's resolution (the deep sigmoid stack's 4.5e-8 on
one VM, 4.9e-8 on another) is the rounding of the forward's float32 arithmetic, not a property of
the model. A forward-signal finding that ends at such a layer is compared by its order of magnitude."""
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_SIGNAL_TRENDS = ("vanishing_activation", "exploding_activation")


def differences(got: object, want: object) -> list[str]:
    """Where ``got`` differs from the golden ``want`` beyond the tolerances above, as ``path: want -> got``."""
    at_resolution = set()
    if isinstance(want, dict) and isinstance(want.get("layers"), list):
        for layer in want["layers"]:
            a = layer.get("activation") or {}
            if a.get("signal_std") is not None and a["signal_std"] <= RESOLUTION * _scale(a):
                at_resolution.add(layer["name"])
    out: list[str] = []
    _compare(got, want, "", out, 0.0, at_resolution)
    return out


def _scale(activation: dict) -> float:
    return abs(activation.get("mean") or 0.0) + abs(activation.get("std") or 0.0)


def _close(got: float, want: float, rel: float, absolute: float = 0.0) -> bool:
    if math.isnan(want) or math.isnan(got):
        return math.isnan(want) and math.isnan(got)
    return math.isclose(got, want, rel_tol=rel, abs_tol=absolute)


def _compare(got: object, want: object, path: str, out: list[str], absolute: float, at_resolution: set[str]) -> None:
    if isinstance(want, dict) and isinstance(got, dict):
        if got.keys() != want.keys():
            out.append(f"{path}: keys {sorted(want)} -> {sorted(got)}")
            return
        if path.endswith("activation"):
            absolute = RESOLUTION * _scale(want)
        loose = want.get("kind") in _SIGNAL_TRENDS and want.get("layer") in at_resolution
        for key in want:
            if loose and key in ("value", "message"):
                _compare_loosely(got[key], want[key], f"{path}.{key}", out)
            else:
                _compare(got[key], want[key], f"{path}.{key}", out, absolute, at_resolution)
    elif isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            out.append(f"{path}: {len(want)} items -> {len(got)}")
            return
        for i, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, f"{path}[{i}]", out, absolute, at_resolution)
    elif _is_number(want) and _is_number(got) and isinstance(want, float) | isinstance(got, float):
        if not _close(float(got), float(want), REL, absolute):
            out.append(f"{path}: {want!r} -> {got!r}")
    elif isinstance(want, str) and isinstance(got, str):
        _compare_text(got, want, path, out, PRINTED)
    elif got != want:
        out.append(f"{path}: {want!r} -> {got!r}")


def _compare_loosely(got: object, want: object, path: str, out: list[str]) -> None:
    """The same order of magnitude (within 2x): a signal ratio of rounding noise."""
    if isinstance(want, str) and isinstance(got, str):
        _compare_text(got, want, path, out, None)
    elif not (_is_number(got) and _is_number(want) and _within_2x(float(got), float(want))):
        out.append(f"{path}: {want!r} -> {got!r}")


def _within_2x(got: float, want: float) -> bool:
    return got == want or (want != 0 and 0.5 <= got / want <= 2.0)


def _compare_text(got: str, want: str, path: str, out: list[str], rel: float | None) -> None:
    """The words exactly, integers in them (counts, layer names) exactly, other numbers to ``rel``
    (None: within 2x)."""
    if got == want:
        return
    if _NUMBER.sub("#", got) != _NUMBER.sub("#", want):
        out.append(f"{path}: {want!r} -> {got!r}")
        return
    for g, w in zip(_NUMBER.findall(got), _NUMBER.findall(want)):
        if g.lstrip("+-").isdigit() or w.lstrip("+-").isdigit():
            same = g == w
        else:
            same = _within_2x(float(g), float(w)) if rel is None else _close(float(g), float(w), rel)
        if not same:
            out.append(f"{path}: {want!r} -> {got!r}")
            return


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)



def test_the_comparison_tolerates_rounding_only() -> None:
    """The tolerances let a CPU's rounding through and nothing else."""
    layer = {"name": "3", "activation": {"mean": 0.5, "std": 0.2, "signal_std": 3e-8}, "grad": {"output_rms": 4.340094e-06}}
    finding = {"kind": "vanishing_activation", "layer": "3", "value": 4.3e-8,
               "message": "shrinks to 4.30e-08 of its size at 0 (Linear) by 3 (Linear) over 2 weight layers"}
    want = {"layers": [layer], "findings": [finding], "summary": {"verdict": "WARN: gradient shrinks 4.31x a layer"}}

    def edited(path: list, value: object) -> dict:
        document = json.loads(json.dumps(want))
        node = document
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return document

    assert differences(want, want) == []
    assert differences(edited(["layers", 0, "grad", "output_rms"], 4.340082e-06), want) == []  # 3e-6
    assert differences(edited(["layers", 0, "activation", "signal_std"], 3.4e-8), want) == []  # at resolution
    assert differences(edited(["findings", 0, "value"], 5.1e-8), want) == []  # of a rounding-level signal
    assert differences(edited(["summary", "verdict"], "WARN: gradient shrinks 4.32x a layer"), want) == []
    for path, value in [
        (["layers", 0, "grad", "output_rms"], 4.35e-06),  # 2e-3
        (["layers", 0, "activation", "mean"], 0.5001),
        (["layers", 0, "name"], "4"),
        (["findings", 0, "value"], 9.0e-8),  # beyond 2x even at resolution
        (["findings", 0, "message"], finding["message"].replace("by 3 (Linear)", "by 4 (Linear)")),
        (["findings", 0, "message"], finding["message"].replace("shrinks", "grows")),
        (["summary", "verdict"], "WARN: gradient shrinks 4.6x a layer"),
        (["summary", "verdict"], "FAIL: gradient shrinks 4.31x a layer"),
    ]:
        assert differences(edited(path, value), want), (path, value)
