"""The README's examples run, and say what the README says they say."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import EXAMPLES


def test_save_examples_then_analyze_each(tmp_path, invoke):
    subprocess.run([sys.executable, str(EXAMPLES / "save_examples.py"), str(tmp_path)], check=True, capture_output=True)

    sigmoid = invoke("analyze", tmp_path / "sigmoid_mlp.ts", "--input", tmp_path / "mlp_batch.pt", "-F", "json")
    report = json.loads(sigmoid.stdout)
    assert report["run"]["loss"] == "cross-entropy"
    assert "vanishing_gradient" in {f["kind"] for f in report["findings"]}

    relu = invoke("analyze", tmp_path / "relu_mlp_weights.pt", "--factory", f"{EXAMPLES / 'models.py'}:bad_relu_mlp",
                  "--input", tmp_path / "relu_batch.pt", "-F", "json")
    kinds = {f["kind"] for f in json.loads(relu.stdout)["findings"]}
    assert {"vanishing_gradient", "vanishing_activation", "init_mismatch"} <= kinds

    resnet = invoke("analyze", tmp_path / "resnet.pt2", "--input", tmp_path / "images.pt")
    assert resnet.exit_code == 0 and "OK: no findings" in resnet.stdout

    he = invoke("analyze", f"{EXAMPLES / 'models.py'}:he_relu_mlp", "--input-shape", "256,256", "-q")
    assert he.exit_code == 0 and he.stdout.startswith("OK")
