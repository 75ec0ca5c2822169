"""The README's promises: its quick start runs, its config example loads, its exit-code table is the
one the code documents (and the man page prints)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gradcheck_cli.cli.config_file import load_config
from gradcheck_cli.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n## ", start + 1)
    return README[start:end if end >= 0 else len(README)]


def test_quick_start_second_command_runs_as_written(invoke, monkeypatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    block = re.search(r"```\n(.*?)```", _section("## Quick start"), re.S).group(1)
    install, command = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert install == "pip install -e ."
    argv = shlex.split(command)
    assert argv[0] == "gradcheck"
    result = invoke(*argv[1:])
    assert result.exit_code == 1, result.output  # as the README says: a vanishing gradient fails the default gate
    assert "vanishing_gradient" in result.stdout and "not_zero_centred" in result.stdout


def test_config_example_loads(tmp_path) -> None:
    block = re.search(r"```toml\n(.*?)```", README, re.S).group(1)
    text = "\n".join(line[2:] if line.startswith("  ") else line for line in block.splitlines())
    (tmp_path / "pyproject.toml").write_text(text)
    values = load_config(None, start=tmp_path).values
    assert values["fail_on"] == "exploding_gradient,vanishing_gradient,nonfinite,dead_relu"
    assert values["thresholds"] == {"dead_ratio": 0.3}


def test_exit_code_table_is_the_documented_one() -> None:
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", _section("### Exit codes"), re.M)
    assert [(int(code), meaning) for code, meaning in rows] == list(EXIT_CODES)


def _ci_commands() -> list[str]:
    """``.ci/run``'s commands, as a reader would type them (``python3 -m`` and pip's quiet flags dropped)."""
    text = (ROOT / ".ci" / "run").read_text()
    commands = []
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("python3 -m "):
            words = [w for w in shlex.split(line[len("python3 -m "):]) if w not in ("--quiet", "--disable-pip-version-check")]
            commands.append(shlex.join(words))
    return commands


def test_which_torch_names_the_cpu_command_and_the_tested_range() -> None:
    section = _section("## Quick start")
    cpu = re.search(r"^pip install torch==(\S+) --index-url https://download\.pytorch\.org/whl/cpu$", section, re.M)
    assert cpu, "the README gives the CPU install command"
    tested = cpu.group(1)
    bound = re.search(r'"(torch[^"]*)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"`{bound}`" in section and f"torch {tested}" in section  # the range and the tested version, as pinned
    low, high = re.fullmatch(r"torch>=([\d.]+),<([\d.]+)", bound).groups()
    as_tuple = lambda v: tuple(int(p) for p in v.split("."))  # noqa: E731
    assert as_tuple(low) <= as_tuple(tested) < as_tuple(high)
    assert high.split(".")[:2] == [tested.split(".")[0], str(int(tested.split(".")[1]) + 1)]  # nothing newer than CI ran


def test_ci_runs_the_readmes_own_commands() -> None:
    development = _section("## Development")
    readme = [line.split("#")[0].strip() for line in re.search(r"```\n(.*?)```", development, re.S).group(1).splitlines()]
    ci = _ci_commands()
    assert ci[1:] == [shlex.join(shlex.split(c)) for c in readme[:2]], (ci, readme)  # pip install -e ".[dev]", pytest
    cpu = re.search(r"^pip install (torch==\S+) --index-url", _section("## Quick start"), re.M).group(1)
    assert ci[0] == f"pip install {cpu}"  # the README's CPU torch (CI reads it from local disk, not the index)


def test_save_examples_writes_to_an_ignored_folder(tmp_path) -> None:
    import subprocess

    command = re.search(r"`(python examples/save_examples\.py[^`]*)`", README).group(1)
    argv = shlex.split(command)[1:]
    folder = Path(argv[1]) if len(argv) > 1 else Path("examples/out")  # the script's own default
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    checked = subprocess.run(["git", "check-ignore", "-q", str(folder / "sigmoid_mlp.ts")], cwd=ROOT)
    assert checked.returncode == 0, f"{folder} is not git-ignored"
    source = (ROOT / "examples" / "save_examples.py").read_text()
    assert 'Path(__file__).resolve().parent / "out"' in source  # the default the README relies on
