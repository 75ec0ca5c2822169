"""The HTML report in a real browser: headless Chromium renders it with nothing on the console.

Static checks (tests/render/test_html.py) prove the page has no script tags; this proves a browser
accepts the inline SVG and CSS without complaint. Each check is also run against a deliberately
broken page, so a detector that cannot fail would show. Skipped without a Chromium on PATH.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from gradcheck_cli import analyze
from gradcheck_cli.render.html import render_html

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_html.sh"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BROKEN = '<!DOCTYPE html><html><body><p>x</p><script>throw new Error("deliberate")</script></body></html>\n'
# With --enable-logging, page console messages appear as 'INFO:CONSOLE:<line>] "..."' (older
# releases: 'CONSOLE(<line>)'), uncaught exceptions as "Uncaught ...". Same rule as the script.
CONSOLE = re.compile(r"CONSOLE[:(]|Uncaught")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(BROWSER is None, reason="no chromium/google-chrome on PATH")]


def _screenshot(page: Path, tmp: Path) -> tuple[int, str, bytes]:
    """Run the browser on ``page``: (exit code, stderr log, screenshot bytes or b"")."""
    shot = tmp / f"{page.stem}.png"
    done = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={tmp / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
         "--enable-logging=stderr", "--v=0", str(page)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    return done.returncode, done.stderr, shot.read_bytes() if shot.exists() else b""


def _console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if CONSOLE.search(line)]


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    """The HTML report of a model with findings (a vanishing gradient), plots included when
    matplotlib is installed."""
    from models import deep_sigmoid_mlp

    torch.manual_seed(0)
    report = analyze(deep_sigmoid_mlp(depth=6, width=32), torch.randn(64, 32))
    assert report.findings
    page = tmp_path_factory.mktemp("html") / "report.html"
    page.write_text(render_html(report), encoding="utf-8")
    return page


def test_the_report_renders_with_no_console_errors(report_page, tmp_path):
    code, log, png = _screenshot(report_page, tmp_path)
    assert code == 0, log[-2000:]
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert _console_errors(log) == []


def test_a_broken_page_is_caught_by_the_test_and_by_the_script(report_page, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(BROKEN, encoding="utf-8")
    code, log, _ = _screenshot(broken, tmp_path)
    assert code == 0  # the browser itself is happy: only the console tells
    assert any("Uncaught Error: deliberate" in line for line in _console_errors(log))

    failed = subprocess.run(["bash", str(SCRIPT), str(broken)], capture_output=True, text=True, timeout=90, check=False)
    assert failed.returncode == 1 and "Uncaught Error: deliberate" in failed.stderr
    shot = tmp_path / "shot.png"
    passed = subprocess.run(["bash", str(SCRIPT), str(report_page), str(shot)], capture_output=True, text=True,
                            timeout=90, check=False)
    assert passed.returncode == 0, passed.stderr[-2000:]
    assert passed.stdout.startswith("OK:") and shot.read_bytes().startswith(PNG_MAGIC)
