"""The one-shot process: what a run imports, and how its garbage collector is set (cli/process.py, cli/io.py).

Whole-process time is a benchmark (README "Performance"), not a test; these check the mechanisms that
it rests on, each of which a change can silently undo: a JSON run that pulls in rich again, a
collector frozen in a test runner's process.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest

FACTORY = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
"""

# Runs the console-script entry point as `gradcheck ARGS...` would, then prints what the process holds.
PROBE = """
import gc, json, sys
full = []
gc.callbacks.append(lambda phase, info: full.append(1) if phase == "stop" and info["generation"] == 2 else None)
from gradcheck_cli.cli.app import main
sys.argv = ["gradcheck"] + json.loads(sys.argv[1])
try:
    main()
except SystemExit as exc:
    code = exc.code
prefixes = ("rich", "pydantic", "matplotlib", "onnx", "gradcheck_cli.render.grouping", "gradcheck_cli.render.table",
            "torch._dynamo")
loaded = sorted({name for name in sys.modules if name.split(".")[0] in prefixes or name in prefixes})
sys.stderr.write(json.dumps({"code": code, "loaded": loaded, "full_collections": len(full),
                             "frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}) + "\\n")
"""


@pytest.fixture
def factory(tmp_path: Path) -> str:
    path = tmp_path / "tiny_factory.py"
    path.write_text(FACTORY)
    return f"{path}:build"


def _probe(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stderr.strip().splitlines()[-1])


def test_a_json_run_to_a_pipe_imports_no_renderer_and_no_rich(factory) -> None:
    facts = _probe("analyze", factory, "-s", "16,8", "--format", "json")
    assert facts["code"] == 0
    # Each of these is tens of ms of a whole process (torch._dynamo ~1 s); the JSON report needs none of them.
    assert facts["loaded"] == [], facts["loaded"]


def test_a_table_run_imports_rich_and_the_table_renderer(factory) -> None:
    """The other side of the test above: the lazy paths do load what a table needs."""
    facts = _probe("analyze", factory, "-s", "16,8")
    assert {"rich.console", "rich.table", "gradcheck_cli.render.table"} <= set(facts["loaded"])
    assert not any(name.split(".")[0] in ("pydantic", "matplotlib", "onnx") for name in facts["loaded"])


def test_the_one_shot_process_freezes_its_imports_and_runs_no_full_collection(factory) -> None:
    facts = _probe("analyze", factory, "-s", "16,8", "--format", "json")
    assert facts["enabled"], "the collector must be on again after the imports"
    assert facts["frozen"] > 50_000, facts  # torch's and the engine's objects, kept out of every collection
    assert facts["full_collections"] == 0, facts


def test_an_in_process_invocation_leaves_the_collector_alone(invoke, factory) -> None:
    """Tests, notebooks and the Python API call the app in their own process: nothing of it is frozen."""
    frozen, enabled = gc.get_freeze_count(), gc.isenabled()
    result = invoke("analyze", factory, "-s", "16,8", "--format", "json")
    assert result.exit_code == 0, result.output
    assert (gc.get_freeze_count(), gc.isenabled()) == (frozen, enabled)
