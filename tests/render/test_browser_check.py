"""Issue 18: the HTML report of a 16-block transformer in headless Chromium (scripts/check_html.sh --roles).

A GPT-2-like model (16 blocks of ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.act, mlp.c_proj) is analysed
by the CLI, as a user would, and its page must render to a screenshot with nothing on the browser console, and its
gradient-flow figure must draw, in the browser's DOM, one line per role named in its legend (in the legend's colour,
one point per block). A page with a role line taken out is caught, so the check can fail. Skipped without a
Chromium on PATH, transformers or matplotlib.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                if shutil.which(b)), None)
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_html.sh"
ROLES = ["ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.act", "mlp.c_proj"]
FACTORY = """\
import torch
from transformers import GPT2Config, GPT2LMHeadModel


def build():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=16, n_embd=64, n_head=2, vocab_size=500, n_positions=64,
                                      bos_token_id=0, eos_token_id=0))
"""

pytestmark = [pytest.mark.slow, pytest.mark.skipif(BROWSER is None, reason="no chromium/google-chrome on PATH")]


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    pytest.importorskip("matplotlib")
    from typer.testing import CliRunner

    from gradcheck_cli.cli.app import app

    folder = tmp_path_factory.mktemp("gpt2")
    (folder / "factory.py").write_text(FACTORY)
    out = folder / "report.html"
    result = CliRunner().invoke(app, ["analyze", f"{folder / 'factory.py'}:build", "--input-shape", "2,32",
                                      "--input-range", "0,500", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def _check(page: Path, shot: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), "--roles", str(page), str(shot)], capture_output=True, text=True,
                          timeout=180, check=False)


def test_the_16_block_report_renders_clean_with_one_line_per_role(page, tmp_path) -> None:
    shot = tmp_path / "shot.png"
    done = _check(page, shot)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "no console output" in done.stdout and shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert shot.stat().st_size > 50_000
    flow = re.search(r"^ROLES: Gradient flow: (\d+) roles in the legend, (\d+) lines \((.*)\)$", done.stdout, re.M)
    assert flow, done.stdout
    assert int(flow.group(1)) == int(flow.group(2)) == len(ROLES)
    assert flow.group(3) == ", ".join(f"{role} 16 points" for role in ROLES)  # one point per block


def test_a_missing_role_line_is_caught(page, tmp_path) -> None:
    text = page.read_text(encoding="utf-8")
    assert text.count('id="gradient-flow-role-7"') == 1
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace('id="gradient-flow-role-7"', 'id="gradient-flow-gone-7"'), encoding="utf-8")
    done = _check(broken, tmp_path / "shot.png")
    assert done.returncode == 1
    assert "FAIL: Gradient flow: 6 lines for 7 legend roles" in done.stderr
