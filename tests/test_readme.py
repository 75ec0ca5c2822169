"""The README's promises: its quick start runs, its config example loads, its exit-code table is the
one the code documents (and the man page prints)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from gradcheck_cli.cli.config_file import load_config
from gradcheck_cli.errors import EXIT_CODES

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(title)
    return README[start:README.index("\n## ", start + 1)]


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
