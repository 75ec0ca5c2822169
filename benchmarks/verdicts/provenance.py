"""Which gradcheck a sweep's numbers came from (shared by zoo.py and trainability.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def source_state(package_dir: Path) -> dict[str, Any]:
    """Which gradcheck the numbers came from: the checkout's commit (read-only git queries), whether the
    imported package is the checkout's, and $GRADCHECK_SOURCE_LABEL (e.g. the commit of an exported copy
    put first on PYTHONPATH)."""
    import os
    import subprocess

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10,
                                  check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    dirty = git("status", "--porcelain", "--", "gradcheck_cli")
    return {"gradcheck_path": str(package_dir), "imported_from_checkout": package_dir.resolve().is_relative_to(ROOT),
            "checkout_commit": git("rev-parse", "--short", "HEAD"),
            "checkout_gradcheck_cli_uncommitted_changes": bool(dirty) if dirty is not None else None,
            "label": os.environ.get("GRADCHECK_SOURCE_LABEL")}
