"""Conventions users expect (issue 18, item 9): ``-v/--verbose``, ``--color`` with NO_COLOR/FORCE_COLOR, a
standalone ``gradcheck.toml``, ``GRADCHECK_<KEY>`` environment overrides (command line > environment > config
file > defaults) and the ``config: FILE`` header line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gradcheck_cli.cli.config_file import KEYS, discover, env_name, load_config, load_environment
from gradcheck_cli.cli.io import color_mode
from gradcheck_cli.errors import UsageError

FACTORY = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
"""

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No colour convention and no GRADCHECK_<KEY> from the machine running the tests."""
    for name in ("NO_COLOR", "FORCE_COLOR", "COLORTERM", *(env_name(key) for key in KEYS)):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp/proj`` with models.py; the working directory is ``tmp/proj/sub``."""
    root = tmp_path / "proj"
    (root / "sub").mkdir(parents=True)
    (root / "models.py").write_text(FACTORY)
    monkeypatch.chdir(root / "sub")
    return root


@pytest.fixture
def model(project: Path) -> str:
    return f"{project / 'models.py'}:build"


@pytest.fixture
def report_json(invoke, model: str, project: Path) -> Path:
    path = project / "report.json"
    assert invoke("analyze", model, "-s", "16,8", "--no-config", "-o", path, "-q").exit_code == 0
    return path


def _run(invoke, model: str, *args: str) -> dict:
    result = invoke("analyze", model, "-s", "16,8", "-F", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["run"]


def _one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gradcheck: error: "), result.stderr
    assert result.stdout == ""
    return lines[0]


# -- -v/--verbose ---------------------------------------------------------------------------------------------------
def test_verbose_analyze_prints_phases_with_times_and_leaves_the_report_alone(invoke, model) -> None:
    quiet = invoke("analyze", model, "-s", "16,8", "-F", "json", "--seed", "1")
    loud = invoke("analyze", model, "-s", "16,8", "-F", "json", "--seed", "1", "--verbose")
    assert quiet.exit_code == loud.exit_code == 0, loud.output
    assert quiet.stderr == ""
    assert loud.stdout == quiet.stdout                     # the report is byte for byte the same
    lines = loud.stderr.splitlines()
    for phase in ("importing torch and the engine", "loading model", "forward+backward (1 batch)", "diagnosing",
                  "rendering json"):
        assert any(re.fullmatch(rf"gradcheck: {re.escape(phase)}: \d+\.\d\d s", line) for line in lines), (phase, lines)
    assert any(re.fullmatch(r"gradcheck: analysis: \d+\.\d\d s in all", line) for line in lines), lines
    order = [next(i for i, line in enumerate(lines) if phase in line) for phase in ("loading model", "diagnosing",
                                                                                     "in all", "rendering json")]
    assert order == sorted(order), lines
    assert "-v, --verbose" in invoke("analyze", "--help").stdout


def test_verbose_says_where_settings_came_from(invoke, model, project, monkeypatch) -> None:
    (project / "gradcheck.toml").write_text('seed = 5\nloss = "mse"\n')
    monkeypatch.setenv("GRADCHECK_FAIL_ON", "all")
    result = invoke("analyze", model, "-s", "16,8", "-F", "json", "-v", "--loss", "sum")
    assert result.exit_code in (0, 1), result.output
    err = result.stderr
    assert re.search(r"gradcheck: config: \S*gradcheck\.toml sets seed, loss", err), err
    assert "gradcheck: environment: GRADCHECK_FAIL_ON=all" in err
    assert "gradcheck: command line overrides: loss" in err
    bare = invoke("analyze", model, "-s", "16,8", "-F", "json", "-v", "--no-config")
    assert "gradcheck: config: none (--no-config)" in bare.stderr


def test_verbose_compare_and_render_time_their_phases(invoke, report_json) -> None:
    compared = invoke("compare", report_json, report_json, "-v")
    assert compared.exit_code == 0, compared.output
    for phase in (f"reading {report_json}", "comparing", "rendering table"):
        assert re.search(rf"^gradcheck: {re.escape(phase)}: \d+\.\d\d s$", compared.stderr, re.M), compared.stderr
    assert "gradcheck: fail set: the current report's (error)" in compared.stderr
    rendered = invoke("render", report_json, "--verbose", "-F", "markdown")
    assert rendered.exit_code == 0, rendered.output
    assert re.search(r"^gradcheck: rendering markdown: \d+\.\d\d s$", rendered.stderr, re.M), rendered.stderr
    assert invoke("render", report_json, "-F", "markdown").stderr == ""


@pytest.mark.parametrize("command", ["analyze", "compare", "render"])
def test_quiet_and_verbose_together_is_a_usage_error(invoke, model, report_json, command) -> None:
    args = {"analyze": [model, "-s", "16,8"], "compare": [report_json, report_json], "render": [report_json]}[command]
    line = _one_line_error(invoke(command, *args, "-q", "-v"))
    assert line == "gradcheck: error: give --quiet or --verbose, not both"


# -- --color and NO_COLOR / FORCE_COLOR -----------------------------------------------------------------------------
@pytest.mark.parametrize(("flag", "env", "expected"), [
    (None, {}, "auto"),
    ("auto", {}, "auto"),
    ("always", {}, "always"),
    ("never", {}, "never"),
    (None, {"NO_COLOR": "1"}, "never"),
    (None, {"NO_COLOR": ""}, "auto"),            # set but empty: not set (no-color.org)
    (None, {"FORCE_COLOR": "1"}, "always"),
    (None, {"FORCE_COLOR": "0"}, "auto"),
    (None, {"NO_COLOR": "1", "FORCE_COLOR": "1"}, "never"),
    ("always", {"NO_COLOR": "1"}, "always"),     # the flag wins over the environment
    ("never", {"FORCE_COLOR": "1"}, "never"),
])
def test_color_mode_precedence(flag, env, expected) -> None:
    assert color_mode(flag, env) == expected


@pytest.mark.parametrize(("args", "env", "coloured"), [
    ([], {}, False),                               # CliRunner's stdout is not a terminal: auto means none
    (["--color", "always"], {}, True),
    (["--color", "never"], {}, False),
    ([], {"FORCE_COLOR": "1"}, True),
    ([], {"NO_COLOR": "1", "FORCE_COLOR": "1"}, False),
    (["--color", "always"], {"NO_COLOR": "1"}, True),
    (["--color", "never"], {"FORCE_COLOR": "1"}, False),
    (["--color", "ALWAYS"], {}, True),
])
def test_color_on_and_off_in_the_table(invoke, report_json, monkeypatch, args, env, coloured) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for command in (["render", report_json], ["compare", report_json, report_json]):
        result = invoke(*command, *args)
        assert result.exit_code == 0, result.output
        assert bool(ANSI.search(result.stdout)) is coloured, (command, args, env, result.stdout[:300])
        assert "Layers (forward order)" in result.stdout or "unchanged" in result.stdout.lower()


def test_color_always_in_a_pipe_colours_errors_but_draws_no_progress_bar(invoke, model, project, monkeypatch) -> None:
    analyzed = invoke("analyze", model, "-s", "16,8", "--color", "always")
    assert analyzed.exit_code == 0, analyzed.output
    assert ANSI.search(analyzed.stdout) and analyzed.stderr == ""   # colour, but no bar animating a CI log
    monkeypatch.setenv("FORCE_COLOR", "1")                          # rich alone would take this for a terminal
    forced = invoke("analyze", model, "-s", "16,8")
    assert forced.exit_code == 0 and ANSI.search(forced.stdout) and forced.stderr == "", forced.stderr[:200]
    monkeypatch.delenv("FORCE_COLOR")
    failed = invoke("render", project / "missing.json", "--color", "always")
    assert failed.exit_code == 2 and ANSI.search(failed.stderr), failed.stderr
    plain = invoke("render", project / "missing.json", "--color", "never")
    assert plain.exit_code == 2 and not ANSI.search(plain.stderr) and "gradcheck: error:" in plain.stderr


def test_option_errors_before_the_command_follow_the_environment(invoke, report_json, monkeypatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    forced = invoke("render", report_json, "--bogus")
    assert forced.exit_code == 2 and ANSI.search(forced.stderr), forced.stderr
    monkeypatch.setenv("NO_COLOR", "1")
    plain = invoke("render", report_json, "--bogus")
    assert plain.exit_code == 2 and not ANSI.search(plain.stderr) and "--bogus" in plain.stderr


def test_bad_color_value_is_a_one_line_usage_error(invoke, report_json) -> None:
    line = _one_line_error(invoke("render", report_json, "--color", "sometimes"))
    assert "--color" in line and "sometimes" in line


# -- gradcheck.toml --------------------------------------------------------------------------------------------------
def test_gradcheck_toml_is_discovered_from_below(project: Path) -> None:
    assert discover(Path.cwd()) is None
    (project / "gradcheck.toml").write_text("seed = 3\n")
    assert discover(Path.cwd()) == (project / "gradcheck.toml").resolve()
    config = load_config(None, start=Path.cwd())
    assert config.values == {"seed": 3} and config.shadowed is None


def test_gradcheck_toml_wins_over_pyproject_in_the_same_folder(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.gradcheck]\nseed = 1\n")
    (project / "gradcheck.toml").write_text("seed = 2\n")
    config = load_config(None, start=Path.cwd())
    assert config.values == {"seed": 2}
    assert config.path.name == "gradcheck.toml" and config.shadowed.name == "pyproject.toml"
    # a pyproject.toml without our table is not shadowed, just not ours
    (project / "pyproject.toml").write_text("[tool.other]\nx = 1\n")
    assert load_config(None, start=Path.cwd()).shadowed is None


def test_the_nearest_folder_wins_whichever_file_it_holds(project: Path) -> None:
    (project / "gradcheck.toml").write_text("seed = 2\n")
    (Path.cwd() / "pyproject.toml").write_text("[tool.gradcheck]\nseed = 9\n")
    assert load_config(None, start=Path.cwd()).values == {"seed": 9}
    (Path.cwd() / "pyproject.toml").write_text("[project]\nname = 'x'\n")   # no table: keep walking up
    assert load_config(None, start=Path.cwd()).values == {"seed": 2}


def test_gradcheck_toml_errors_name_the_file(project: Path) -> None:
    (project / "gradcheck.toml").write_text("sed = 3\n")
    with pytest.raises(UsageError, match=r"gradcheck\.toml: unknown key 'sed'"):
        load_config(None, start=Path.cwd())


def test_analyze_uses_the_discovered_gradcheck_toml(invoke, model, project) -> None:
    (project / "gradcheck.toml").write_text('seed = 4\nfail-on = "all"\n')
    run = _run(invoke, model)
    assert run["seed"] == 4 and run["config"].endswith("gradcheck.toml")
    assert _run(invoke, model, "--no-config")["config"] is None


# -- GRADCHECK_<KEY> environment overrides ---------------------------------------------------------------------------
def test_every_config_key_has_a_variable() -> None:
    assert env_name("fail-on") == "GRADCHECK_FAIL_ON" and env_name("clip-grad-norm") == "GRADCHECK_CLIP_GRAD_NORM"
    assert len({env_name(key) for key in KEYS}) == len(KEYS)


def test_environment_values_read_as_toml_or_as_text() -> None:
    env = load_environment({
        "GRADCHECK_FAIL_ON": "all", "GRADCHECK_SEED": "3", "GRADCHECK_LR": "1e-3", "GRADCHECK_DEVICE": "cuda:1",
        "GRADCHECK_INPUT_SHAPE": "[[4, 8], [4, 2]]", "GRADCHECK_DTYPE": "bfloat16",
        "GRADCHECK_IGNORE": '["head:dead_relu", "enc.*"]', "GRADCHECK_THRESHOLDS": "dead_ratio=0.3,chaos=2",
        "GRADCHECK_BATCHES": "", "GRADCHECK_DIR": "examples/ci", "GRADCHECK_UPDATE_GOLDEN": "1",
    })
    assert env.values == {"fail_on": "all", "seed": 3, "lr": 1e-3, "device": "cuda:1", "input_shape": ["4,8", "4,2"],
                          "dtype": "bfloat16", "ignore": ["head:dead_relu", "enc.*"],
                          "thresholds": {"dead_ratio": 0.3, "chaos": 2.0}}
    assert "GRADCHECK_BATCHES" not in env.variables and "GRADCHECK_DIR" not in env.variables  # empty; not ours
    assert load_environment({"GRADCHECK_INPUT_SHAPE": "4,8"}).values == {"input_shape": ["4,8"]}
    assert load_environment({"GRADCHECK_THRESHOLDS": "{dead-ratio = 0.25}"}).values == {"thresholds": {"dead_ratio": 0.25}}
    assert load_environment({"GRADCHECK_IGNORE": "encoder.*:dead_relu,saturated_activation"}).values == {
        "ignore": ["encoder.*:dead_relu,saturated_activation"]}


@pytest.mark.parametrize(("name", "value", "says"), [
    ("GRADCHECK_SEED", "abc", "must be an integer"),
    ("GRADCHECK_SEED", "1.5", "must be an integer"),
    ("GRADCHECK_BATCHES", "0", "must be a positive integer"),
    ("GRADCHECK_FAIL_ON", "bogus", "bogus"),
    ("GRADCHECK_LOSS", "l1", "must be one of"),
    ("GRADCHECK_THRESHOLDS", "dead_ratio", "NAME=VALUE"),
    ("GRADCHECK_THRESHOLDS", "no_such=1", "no_such"),
    ("GRADCHECK_INPUT_SHAPE", "4,x", "GRADCHECK_INPUT_SHAPE"),
])
def test_bad_environment_value_is_a_one_line_usage_error_naming_the_variable(invoke, model, monkeypatch, name,
                                                                                 value, says) -> None:
    monkeypatch.setenv(name, value)
    line = _one_line_error(invoke("analyze", model, "-s", "16,8", "-F", "json"))
    assert line.startswith(f"gradcheck: error: environment variable {name}=") and says in line, line


def test_precedence_command_line_over_environment_over_file_over_default(invoke, model, project, monkeypatch) -> None:
    assert _run(invoke, model)["seed"] == 0                                                    # default
    (project / "gradcheck.toml").write_text('seed = 1\nfail-on = "warning"\n[thresholds]\ndead-ratio = 0.3\n'
                                            'chaos = 2.0\n')
    run = _run(invoke, model)
    assert (run["seed"], run["thresholds"]["dead_ratio"], run["thresholds"]["chaos"]) == (1, 0.3, 2.0)   # file
    monkeypatch.setenv("GRADCHECK_SEED", "2")
    monkeypatch.setenv("GRADCHECK_THRESHOLDS", "dead_ratio=0.4")
    run = _run(invoke, model)
    assert (run["seed"], run["thresholds"]["dead_ratio"], run["thresholds"]["chaos"]) == (2, 0.4, 2.0)   # env > file
    assert "warning" in run["fail_on"] and "nonfinite" not in run["fail_on"]                  # file key env left
    run = _run(invoke, model, "--seed", "3", "--threshold", "dead_ratio=0.45")
    assert (run["seed"], run["thresholds"]["dead_ratio"], run["thresholds"]["chaos"]) == (3, 0.45, 2.0)  # flag wins
    assert _run(invoke, model, "--seed", "0")["seed"] == 0          # a flag equal to the default still wins


def test_environment_fail_on_and_device(invoke, model, monkeypatch) -> None:
    monkeypatch.setenv("GRADCHECK_FAIL_ON", "all")
    assert "dead_relu" in _run(invoke, model)["fail_on"]
    monkeypatch.setenv("GRADCHECK_DEVICE", "meta-device-that-does-not-exist")
    result = invoke("analyze", model, "-s", "16,8", "-F", "json")
    assert result.exit_code == 2, result.output                      # the variable reached the device choice
    assert _run(invoke, model, "--device", "cpu")["device"] == "cpu"  # and the flag beats it


def test_ignore_rules_add_up_from_file_environment_and_flags(invoke, model, project, monkeypatch) -> None:
    (project / "gradcheck.toml").write_text('ignore = ["a.*"]\n')
    monkeypatch.setenv("GRADCHECK_IGNORE", "b.*:dead_relu")
    globs = [rule["layer"] for rule in _run(invoke, model, "--ignore", "c.*")["ignore"]]
    assert globs == ["a.*", "b.*", "c.*"]


def test_environment_applies_with_no_config(invoke, model, project, monkeypatch) -> None:
    (project / "gradcheck.toml").write_text("seed = 1\n")
    monkeypatch.setenv("GRADCHECK_SEED", "2")
    run = _run(invoke, model, "--no-config")
    assert run["seed"] == 2 and run["config"] is None


# -- config: FILE in the header --------------------------------------------------------------------------------------
def test_header_names_the_config_file_only_when_one_was_used(invoke, model, project) -> None:
    bare = invoke("analyze", model, "-s", "16,8")
    assert bare.exit_code == 0 and "config:" not in bare.stdout
    (project / "gradcheck.toml").write_text("seed = 1\n")
    table = invoke("analyze", model, "-s", "16,8")
    assert table.exit_code == 0, table.output
    header = table.stdout.split("Layers (forward order)")[0]
    config_lines = [line for line in header.splitlines() if line.startswith("config: ")]
    assert len(config_lines) == 1 and config_lines[0].strip().endswith("gradcheck.toml"), header
    markdown = invoke("analyze", model, "-s", "16,8", "-F", "markdown").stdout
    assert re.search(r"^config: `[^`]*gradcheck\.toml`$", markdown, re.M), markdown[:500]
    html = invoke("analyze", model, "-s", "16,8", "-F", "html").stdout
    assert re.search(r'<p class="dim">config: [^<]*gradcheck\.toml</p>', html)


# -- --help stays torch-free -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["analyze", "compare", "render"])
def test_help_lists_the_conventions_without_importing_torch(command) -> None:
    code = ("import sys\nfrom gradcheck_cli.cli.app import main\n"
            f"sys.argv = ['gradcheck', {command!r}, '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "--verbose" in out.stdout and "--color" in out.stdout
