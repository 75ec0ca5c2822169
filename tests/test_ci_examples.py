"""examples/ci works: the workflow's gradcheck steps and the pre-commit hooks, run as written, pass
on the example model and fail on a broken copy of it (dead ReLUs: in the example's fail set)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "examples" / "ci"
BREAK = '''

def build() -> nn.Module:  # a broken change: every block's ReLUs get bias -10 (about 7 std below zero)
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        for block in net.blocks:
            block.fc1.bias.fill_(-10.0)
    return net
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(CI, copy)
    return copy


def _gradcheck_steps() -> list[str]:
    workflow = yaml.safe_load((CI / "github-actions.yml").read_text())
    steps = workflow["jobs"]["gradcheck"]["steps"]
    return [step["run"] for step in steps if step.get("run", "").startswith("gradcheck ")]


def _run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    bindir = str(Path(sys.executable).parent)  # the gradcheck of this environment first
    env = {**os.environ, **env, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    env.pop("COLUMNS", None)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_workflow_steps_pass_on_the_example(project: Path) -> None:
    steps = _gradcheck_steps()
    assert [s.split()[1] for s in steps] == ["analyze", "render", "compare", "render"]
    summary = project / "step_summary.md"
    for command in steps:
        result = _run(command, project, {"GITHUB_STEP_SUMMARY": str(summary)})
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        if "--format github" in command:
            assert all(line.startswith("::") for line in result.stdout.splitlines()), result.stdout
    report = json.loads((project / "gradcheck-report.json").read_text())
    assert report["summary"]["status"] == "ok" and report["run"]["config"] == "pyproject.toml"
    assert (project / "gradcheck-report.html").read_text().lstrip().lower().startswith("<!doctype html>")
    text = summary.read_text()
    assert "gradcheck: OK" in text and "gradcheck compare: UNCHANGED" in text


def test_workflow_fails_a_broken_change(project: Path) -> None:
    (project / "model.py").write_text((project / "model.py").read_text() + BREAK)
    analyze, _, compare, _ = _gradcheck_steps()
    result = _run(analyze, project, {})
    assert result.returncode == 1 and "dead_relu" in result.stdout, result.stdout + result.stderr
    result = _run(compare, project, {})
    assert result.returncode == 1, result.stdout + result.stderr
    assert "::error title=gradcheck new dead_relu" in result.stdout


def test_the_committed_baseline_matches_a_fresh_run(project: Path) -> None:
    """The baseline in the repository is what the example produces (regenerate it if this fails)."""
    analyze = _gradcheck_steps()[0].replace("gradcheck-report.json", "fresh.json")
    assert _run(analyze, project, {}).returncode == 0
    result = _run("gradcheck compare gradcheck-baseline.json fresh.json --tolerance 1.01 --dead-tolerance 0", project, {})
    assert result.returncode == 0 and "UNCHANGED" in result.stdout, result.stdout + result.stderr


def test_pre_commit_hooks_run_as_written(project: Path) -> None:
    local = yaml.safe_load((CI / "pre-commit-config.yaml").read_text())["repos"][0]["hooks"][0]
    published = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())[0]
    assert local["id"] == published["id"] == "gradcheck"
    commands = [local["entry"], published["entry"] + " model.py:build"]
    for command in commands:
        result = _run(command, project, {})
        assert result.returncode == 0 and result.stdout.startswith("OK"), result.stdout + result.stderr
    (project / "model.py").write_text((project / "model.py").read_text() + BREAK)
    for command in commands:
        assert _run(command, project, {}).returncode == 1
