"""``[tool.gradcheck]``: discovery, validation, and precedence (flag > file > default)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck_cli.cli.config_file import KEYS, discover, load_config
from gradcheck_cli.errors import UsageError
from gradcheck_cli.analysis.options import FINDING_KINDS, IgnoreRule, parse_ignore

FACTORY = """
import torch
from torch import nn

def exploding():
    layers = []
    for _ in range(12):
        l = nn.Linear(1, 1, bias=False)
        nn.init.constant_(l.weight, 5.0)
        layers.append(l)
    return nn.Sequential(*layers)

def sigmoid_chain():
    torch.manual_seed(0)
    layers = []
    for _ in range(8):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    return nn.Sequential(*layers)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with models.py, a nested src/pkg folder as the working directory."""
    (tmp_path / "models.py").write_text(FACTORY)
    work = tmp_path / "src" / "pkg"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    return tmp_path


def _pyproject(folder: Path, body: str) -> Path:
    path = folder / "pyproject.toml"
    path.write_text(body)
    return path


def _report(result) -> dict:
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


# --- discovery ------------------------------------------------------------------------------------


def test_discovery_walks_up_to_the_nearest_table(project: Path) -> None:
    outer = _pyproject(project, "[tool.gradcheck]\nseed = 3\n")
    _pyproject(project / "src", "[project]\nname = 'x'\n")  # nearer, but without our table: skipped
    assert discover(Path.cwd()) == outer
    inner = _pyproject(project / "src" / "pkg", "[tool.gradcheck]\nseed = 4\n")
    assert discover(Path.cwd()) == inner
    assert load_config(None, start=Path.cwd()).values == {"seed": 4}


def test_broken_pyproject_is_skipped_unless_it_holds_our_table(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    _pyproject(tmp_path, "[tool.gradcheck]\nseed = 5\n")
    _pyproject(inner, "[project\nname = 'broken, not ours'\n")
    assert load_config(None, start=inner).values == {"seed": 5}
    _pyproject(inner, "[tool.gradcheck]\nseed = = 1\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_config(None, start=inner)


def test_no_config_anywhere_is_empty(tmp_path: Path) -> None:
    assert discover(tmp_path) is None
    assert load_config(None, start=tmp_path).values == {}
    _pyproject(tmp_path, "[tool.gradcheck]\nseed = 1\n")
    assert load_config(None, start=tmp_path, enabled=False).values == {}  # --no-config


def test_explicit_file_standalone_or_pyproject(tmp_path: Path) -> None:
    standalone = tmp_path / "gradcheck.toml"
    standalone.write_text('fail-on = ["nonfinite", "dead_relu"]\ninput-shape = "4,3,8,8"\n')
    assert load_config(standalone, start=tmp_path).values == {"fail_on": "nonfinite,dead_relu", "input_shape": ["4,3,8,8"]}
    bare = _pyproject(tmp_path, "[project]\nname = 'x'\n")
    with pytest.raises(UsageError, match=r"has no \[tool.gradcheck\] table"):
        load_config(bare, start=tmp_path)
    with pytest.raises(UsageError, match="not found"):
        load_config(tmp_path / "missing.toml", start=tmp_path)


@pytest.mark.parametrize(("body", "message"), [
    ("[tool.gradcheck]\nfail_onn = 'all'\n", "unknown key 'fail_onn'"),
    ("[tool.gradcheck]\nseed = 'zero'\n", "seed must be an integer"),
    ("[tool.gradcheck]\nbatch-size = 0\n", "batch-size must be a positive integer"),
    ("[tool.gradcheck]\nfail-on = 'vanishing'\n", "unknown finding kind 'vanishing'"),
    ("[tool.gradcheck]\nloss = 'hinge'\n", "loss must be one of"),
    ("[tool.gradcheck]\nthresholds = { dead_ratoi = 0.2 }\n", "unknown threshold 'dead_ratoi'"),
    ("[tool.gradcheck]\nthresholds = { dead_ratio = 'high' }\n", "thresholds must be a table of NAME = number"),
    ("[tool.gradcheck]\ninput-shape = '8,x'\n", "malformed --input-shape"),
    ("[tool.gradcheck]\nignore = ['fc*:dead_relu,typo']\n", "unknown finding kind 'typo'"),
    ("[tool.gradcheck\n", "not valid TOML"),
])
def test_bad_config_names_the_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = _pyproject(tmp_path, body)
    with pytest.raises(UsageError, match=message) as info:
        load_config(path, start=tmp_path)
    assert str(path) in str(info.value)


def test_factory_in_config_is_relative_to_the_config_file(project: Path) -> None:
    _pyproject(project, "[tool.gradcheck]\nfactory = 'models.py:exploding'\n")
    factory = load_config(None, start=Path.cwd()).values["factory"]
    assert Path(factory.rpartition(":")[0]).resolve() == (project / "models.py").resolve()


# --- precedence through the CLI ------------------------------------------------------------------


def test_file_sets_the_gate_and_a_flag_overrides_it(invoke, project: Path) -> None:
    model = f"{project / 'models.py'}:sigmoid_chain"
    assert invoke("analyze", model, "-s", "64,16", "-q").exit_code == 1  # default gate: a vanishing gradient is an error
    _pyproject(project, "[tool.gradcheck]\nfail-on = 'exploding_gradient'\ninput-shape = [64, 16]\n")
    lenient = invoke("analyze", model, "-F", "json")
    assert lenient.exit_code == 0 and _report(lenient)["run"]["fail_on"] == ["exploding_gradient"]
    _pyproject(project, "[tool.gradcheck]\nfail-on = 'all'\ninput-shape = [64, 16]\n")
    gated = invoke("analyze", model, "-F", "json")
    report = _report(gated)
    assert gated.exit_code == 1 and report["run"]["fail_on"] == sorted(FINDING_KINDS)
    assert Path(report["run"]["config"]).resolve() == (project / "pyproject.toml").resolve()
    assert invoke("analyze", model, "--fail-on", "none", "-q").exit_code == 0  # the flag wins
    assert invoke("analyze", model, "--no-config", "-s", "64,16", "-q").exit_code == 1


def test_thresholds_merge_key_by_key_with_flags_winning(invoke, project: Path) -> None:
    _pyproject(project, "[tool.gradcheck]\ninput-shape = '32,16'\nthresholds = { dead-ratio = 0.3, saturation = 0.1 }\n")
    report = _report(invoke("analyze", f"{project / 'models.py'}:sigmoid_chain", "--threshold", "saturation=0.05", "-F", "json"))
    assert report["run"]["thresholds"]["dead_ratio"] == 0.3
    assert report["run"]["thresholds"]["saturation"] == 0.05


def test_config_input_shape_yields_to_an_input_file(invoke, project: Path) -> None:
    import torch

    torch.save(torch.randn(5, 16), project / "x.pt")
    _pyproject(project, "[tool.gradcheck]\ninput-shape = '32,16'\n")
    report = _report(invoke("analyze", f"{project / 'models.py'}:sigmoid_chain", "-i", project / "x.pt", "-F", "json"))
    assert report["run"]["samples"] == 5


def test_ignore_rules_from_file_and_flag_add_up(invoke, project: Path) -> None:
    model = f"{project / 'models.py'}:exploding"
    gate = ("--fail-on", "exploding_gradient")
    everything = _report(invoke("analyze", model, "-s", "64,1", "-F", "json", *gate))
    layers = {f["layer"] for f in everything["findings"] if f["kind"] == "exploding_gradient"}
    assert layers and everything["summary"]["exit_code"] == 1
    _pyproject(project, "[tool.gradcheck]\nignore = ['*:init_mismatch']\n")
    result = invoke("analyze", model, "-s", "64,1", "-F", "json", *gate,
                    *[a for layer in layers for a in ("--ignore", f"{layer}:exploding_gradient")])
    report = _report(result)
    assert result.exit_code == 0, "the only failing findings were ignored"
    assert {f["kind"] for f in report["findings"]}.isdisjoint({"init_mismatch", "exploding_gradient"})
    assert {f["kind"] for f in report["ignored_findings"]} == {"init_mismatch", "exploding_gradient"}
    assert len(report["findings"]) + len(report["ignored_findings"]) == len(everything["findings"])
    assert [r["layer"] for r in report["run"]["ignore"]][0] == "*"
    assert "ignored by ignore rules" in report["summary"]["verdict"]


def test_config_errors_are_one_line_exit_2(invoke, project: Path) -> None:
    _pyproject(project, "[tool.gradcheck]\nfail_onn = 'all'\n")
    result = invoke("analyze", f"{project / 'models.py'}:exploding", "-s", "4,1")
    assert result.exit_code == 2
    assert result.stderr.count("gradcheck: error:") == 1 and "unknown key 'fail_onn'" in result.stderr
    assert "Traceback" not in result.output
    assert invoke("analyze", "x", "--config", project / "pyproject.toml", "--no-config").exit_code == 2


# --- ignore rules ---------------------------------------------------------------------------------


def test_ignore_rule_syntax() -> None:
    assert parse_ignore("head.*") == IgnoreRule("head.*")
    assert parse_ignore("enc.*:dead_relu,saturated_activation") == IgnoreRule("enc.*", ("dead_relu", "saturated_activation"))
    assert parse_ignore("odd:name") == IgnoreRule("odd:name")  # not kinds: the colon is part of the name
    assert parse_ignore(":all") == IgnoreRule("*")
    rule = parse_ignore("blocks.*.relu:dead_relu")
    assert rule.matches("blocks.3.relu", "dead_relu") and not rule.matches("blocks.3.relu", "nonfinite")
    assert not rule.matches("head.relu", "dead_relu")


# --- property: whatever valid table is written, it reads back normalised -------------------------

_kinds = st.lists(st.sampled_from(FINDING_KINDS), min_size=1, max_size=3, unique=True)
_shape = st.lists(st.integers(1, 64), min_size=1, max_size=4)
_values = {
    "fail-on": st.one_of(_kinds, _kinds.map(",".join), st.sampled_from(["all", "none"])),
    "seed": st.integers(0, 2**31),
    "batches": st.integers(1, 100),
    "input-shape": st.one_of(_shape, _shape.map(lambda s: ",".join(map(str, s))), st.lists(_shape, min_size=1, max_size=3)),
    "thresholds": st.fixed_dictionaries({}, optional={"dead_ratio": st.floats(0, 1), "saturation": st.floats(0, 1),
                                                      "init-ratio": st.floats(1, 100)}),
    "ignore": st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9_.*]{0,8}", fullmatch=True), _kinds)
                       .map(lambda t: f"{t[0]}:{','.join(t[1])}"), max_size=3),
}


def _toml(value) -> str:  # noqa: ANN001 - a tiny writer for the generated values only
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({}, optional=_values), st.booleans())
def test_any_valid_table_reads_back(tmp_path_factory, table: dict, snake: bool) -> None:
    folder = tmp_path_factory.mktemp("cfg")
    text = "[tool.gradcheck]\n" + "".join(f"{k.replace('-', '_') if snake else k} = {_toml(v)}\n" for k, v in table.items())
    values = load_config(_pyproject(folder, text), start=folder).values
    assert set(values) == {k.replace("-", "_") for k in table}
    for key, value in table.items():
        got = values[key.replace("-", "_")]
        if key == "fail-on":
            assert got == (value if isinstance(value, str) else ",".join(value))
        elif key == "input-shape":
            shapes = value if isinstance(value, list) and value and isinstance(value[0], list) else [value]
            assert got == [s if isinstance(s, str) else ",".join(map(str, s)) for s in shapes]
        elif key == "thresholds":
            assert got == {k.replace("-", "_"): v for k, v in value.items()}
        else:
            assert got == value


@settings(max_examples=40, deadline=None)
@given(st.from_regex(r"[a-z][a-z_-]{0,15}", fullmatch=True).filter(lambda k: k.replace("_", "-") not in KEYS))
def test_any_unknown_key_is_named(tmp_path_factory, key: str) -> None:
    folder = tmp_path_factory.mktemp("cfg")
    with pytest.raises(UsageError, match=f"unknown key '{key}'"):
        load_config(_pyproject(folder, f"[tool.gradcheck]\n{key} = 1\n"), start=folder)
