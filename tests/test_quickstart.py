"""scripts/quickstart_check.sh runs the README's quick start as written: its ``--print`` mode lists exactly the
commands of the README's "Quick start" block, with the set-up line replaced by the README's own CPU set-up block,
and the README states the time the script measured. Fast: nothing is installed (the full run is a manual check:
it needs the network and takes minutes)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "quickstart_check.sh"
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")


def _quick_start() -> str:
    start = README.index("\n## Quick start")
    return README[start:README.index("\n## ", start + 1)]


def _blocks(section: str) -> list[list[str]]:
    return [[line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
            for block in re.findall(r"^```[^\n]*\n(.*?)^```", section, re.S | re.M)]


def _printed(readme: Path | None = None) -> subprocess.CompletedProcess:
    script = SCRIPT
    if readme is not None:  # a copy of the script next to another README
        (readme.parent / "scripts").mkdir()
        script = readme.parent / "scripts" / SCRIPT.name
        shutil.copy(SCRIPT, script)
    return subprocess.run(["bash", str(script), "--print"], capture_output=True, text=True, timeout=60, check=False)


def test_the_script_runs_the_readme_quick_start_with_its_cpu_set_up() -> None:
    done = _printed()
    assert done.returncode == 0, done.stderr
    quick, cpu = _blocks(_quick_start())[0], next(b for b in _blocks(_quick_start()) if "pip install torch" in b[0])
    assert quick == ["pip install -e .", "gradcheck analyze examples/models.py:deep_sigmoid_mlp --input-shape 64,64"]
    assert cpu == ["pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu", "pip install -e ."]
    assert done.stdout.splitlines() == cpu + quick[1:]


def test_the_script_follows_an_edited_readme(tmp_path) -> None:
    edited = _quick_start().replace("--input-shape 64,64", "--input-shape 8,64").replace("torch==2.13.0 ", "torch==2.12.0 ")
    (tmp_path / "README.md").write_text("# x\n" + edited + "\n## Next\n")
    done = _printed(tmp_path / "README.md")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "pip install torch==2.12.0 --index-url https://download.pytorch.org/whl/cpu",
        "pip install -e .",
        "gradcheck analyze examples/models.py:deep_sigmoid_mlp --input-shape 8,64",
    ]


def test_a_readme_without_the_cpu_block_is_refused(tmp_path) -> None:
    section = re.sub(r"```\npip install torch.*?```\n", "", _quick_start(), flags=re.S)
    (tmp_path / "README.md").write_text("# x\n" + section + "\n## Next\n")
    done = _printed(tmp_path / "README.md")
    assert done.returncode == 2 and "CPU block" in done.stderr


def test_the_readme_states_the_measured_time() -> None:
    said = re.search(r"the quick start runs in about ([\d.]+) min on a 2-core VM from a fresh venv, measured with\s+"
                     r"`scripts/quickstart_check\.sh`", _quick_start(), re.I)
    assert said, "the Quick start section states the time scripts/quickstart_check.sh measured"
    assert 0 < float(said.group(1)) < 15
