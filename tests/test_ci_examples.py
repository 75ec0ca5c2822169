"""examples/ci works: the workflow's gradcheck steps and the pre-commit hooks, run as written, pass
on the example model and fail on a broken copy of it (dead ReLUs: in the example's fail set)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "examples" / "ci"
README_CPU_TORCH = re.search(r"^pip install torch==\S+ --index-url https://download\.pytorch\.org/whl/cpu$",
                             (ROOT / "README.md").read_text(), re.M).group(0)
"""The README's CPU install command (the workflow runs the same one)."""
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


# -- the workflow as a user copies it ------------------------------------------------------------------------------
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _workflow() -> dict:
    return yaml.safe_load((CI / "github-actions.yml").read_text())


def _substitute(text: str, env: dict[str, str], root: Path) -> str:
    """``${{ env.X }}`` and ``${{ github.workspace }}`` as Actions expands them; anything else is a test failure
    (so the workflow cannot grow an expression this emulation does not check)."""
    def expand(match: re.Match) -> str:
        name = match.group(1)
        if name.startswith("env.") and name[4:] in env:
            return env[name[4:]]
        if name == "github.workspace":
            return str(root)
        raise AssertionError(f"expression the test does not know: {match.group(0)}")

    return EXPRESSION.sub(expand, text)


def _condition(expression: str | None, outputs: dict[str, dict[str, str]]) -> bool:
    """The step conditions the workflow uses: ``always()`` and ``steps.ID.outputs.KEY == 'VALUE'``, joined by &&."""
    if expression is None:
        return True
    result = True
    for term in (t.strip() for t in expression.split("&&")):
        test = re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+) == '([^']*)'", term)
        if term == "always()":
            continue
        assert test, f"condition the test does not know: {term!r}"
        result = result and outputs.get(test.group(1), {}).get(test.group(2)) == test.group(3)
    return result


def _run_workflow(root: Path, folder: str) -> tuple[dict[str, str], list[str]]:
    """Every run step of the job (the install left out: it needs the network) with ``GRADCHECK_DIR`` set to
    ``folder``, as in a repository whose project lives there; returns (step name -> outcome, artifact paths)."""
    workflow = _workflow()
    env = {**workflow["env"], "GRADCHECK_DIR": folder}
    job = workflow["jobs"]["gradcheck"]
    workdir = root / _substitute(job["defaults"]["run"]["working-directory"], env, root)
    assert workdir.resolve() == (root / folder).resolve() and (workdir / "model.py").is_file()
    outputs: dict[str, dict[str, str]] = {}
    outcomes: dict[str, str] = {}
    artifacts: list[str] = []
    for step in job["steps"]:
        name = step.get("name", step.get("uses", ""))
        if not _condition(step.get("if"), outputs):
            outcomes[name] = "skipped"
            continue
        if step.get("uses", "").startswith("actions/upload-artifact"):
            artifacts = _substitute(step["with"]["path"], env, root).split()
        if "run" not in step or step["run"].lstrip().startswith("pip install"):
            continue
        output = root / f"output.{len(outcomes)}"
        result = _run(_substitute(step["run"], env, root), workdir, {**env, "GITHUB_OUTPUT": str(output)})
        outcomes[name] = "success" if result.returncode == 0 else f"failure {result.returncode}"
        if output.exists():
            outputs[step.get("id", "")] = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return outcomes, artifacts


@pytest.mark.parametrize("folder", [".", "ml/model"])
def test_workflow_copied_into_a_repository_follows_its_one_variable(tmp_path: Path, folder: str) -> None:
    """Copied as the header says (the project at the repository root, or in a sub-folder) and only GRADCHECK_DIR
    changed, every step runs there, none is silently skipped, and the artifact paths exist."""
    root = tmp_path / "repo"
    shutil.copytree(CI, root / folder, dirs_exist_ok=True)
    outcomes, artifacts = _run_workflow(root, folder)
    assert outcomes and all(outcome == "success" for outcome in outcomes.values()), outcomes
    assert {"Annotations and job summary", "Compare with the committed baseline", "HTML report"} <= set(outcomes)
    assert artifacts and all((root / path).is_file() for path in artifacts), artifacts
    text = (CI / "github-actions.yml").read_text()
    body = text[text.index("\njobs:"):]
    assert "examples/ci" not in body, "a path in the job does not follow GRADCHECK_DIR"


def test_workflow_skips_the_report_steps_when_no_report_was_written(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(CI, root)
    (root / "model.py").write_text("def build():\n    raise ValueError('broken factory')\n")
    outcomes, _ = _run_workflow(root, ".")
    assert outcomes["Analyse"].startswith("failure") and outcomes["Report written?"] == "success"
    assert outcomes["HTML report"] == outcomes["Compare with the committed baseline"] == "skipped"


def test_workflow_installs_from_the_repository_with_the_tested_torch() -> None:
    workflow = _workflow()
    install = workflow["env"]["GRADCHECK_INSTALL"]
    assert re.fullmatch(r"gradcheck\[plots\] @ git\+https://github\.com/[^/\s]+/gradcheck(@\S+)?", install), install
    [step] = [s for s in workflow["jobs"]["gradcheck"]["steps"] if "pip install" in s.get("run", "")]
    lines = [line.strip() for line in step["run"].strip().splitlines()]
    assert lines == [README_CPU_TORCH, 'pip install "$GRADCHECK_INSTALL"'], lines  # torch first, from the CPU index
    version = re.search(r"torch==(\S+)", README_CPU_TORCH).group(1)
    assert f"torch=={version}" in (ROOT / ".ci" / "run").read_text()  # what CI installs is what the example pins
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [torch_bound] = [r for r in requirements if r.startswith("torch")]
    assert specifier_contains(torch_bound[len("torch"):], version), (torch_bound, version)


def specifier_contains(specifier: str, version: str) -> bool:
    """``>=2.5,<2.14`` contains ``2.13.0`` (plain release numbers: what the torch bound uses)."""
    def key(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("+")[0].split("."))

    checks = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "==": lambda a, b: a == b, "<=": lambda a, b: a <= b}
    for clause in specifier.split(","):
        op, bound = re.fullmatch(r"\s*(>=|<=|==|<)\s*([\d.]+)\s*", clause).groups()
        width = max(len(key(bound)), len(key(version)))
        pad = lambda v: v + (0,) * (width - len(v))  # noqa: E731
        if not checks[op](pad(key(version)), pad(key(bound))):
            return False
    return True


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
