"""``gradcheck compare``: improved, unchanged and regressed, judged against what theory predicts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from gradcheck_cli import analyze
from gradcheck_cli.report.compare import compare
from gradcheck_cli.report.codec import load_report
from gradcheck_cli.errors import InputError
from gradcheck_cli.report.model import SCHEMA_VERSION

DEPTH, WIDTH = 10, 256
SCALE = 0.4


def relu_mlp(scale: float = 1.0, dead_layer: int | None = None) -> nn.Sequential:
    """He-init ReLU MLP; ``scale`` multiplies every hidden weight (so the backward signal changes by
    ``scale`` per layer), ``dead_layer`` gets a bias of -100 (every unit off for every input)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(DEPTH):
        linear = nn.Linear(WIDTH, WIDTH)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        with torch.no_grad():
            linear.weight.mul_(scale)
        nn.init.constant_(linear.bias, -100.0 if i == dead_layer else 0.0)
        layers += [linear, nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(WIDTH, 10))


def report_file(tmp_path: Path, name: str, model: nn.Module, seed: int = 0, **options) -> Path:
    x = torch.randn(256, WIDTH, generator=torch.Generator().manual_seed(seed))
    path = tmp_path / f"{name}.json"
    path.write_text(analyze(model, x, seed=seed, **options).to_json())
    return path


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("reports")
    return {
        "he": report_file(folder, "he", relu_mlp()),
        "he_other_data": report_file(folder, "he_other_data", relu_mlp(), seed=1),
        "shrunk": report_file(folder, "shrunk", relu_mlp(scale=SCALE)),
        "dead": report_file(folder, "dead", relu_mlp(dead_layer=4)),
    }


def _compare(reports: dict[str, Path], old: str, new: str, **kw):
    return compare(load_report(reports[old], "baseline"), load_report(reports[new], "current"), **kw)


def test_same_report_is_unchanged(reports) -> None:
    result = _compare(reports, "he", "he")
    assert result.status == "unchanged" and result.exit_code == 0
    assert all(l.status == "unchanged" and l.flow_change == 1.0 for l in result.layers if l.flow_change is not None)
    assert not result.findings and not result.notes


def test_other_data_is_unchanged_within_tolerance_and_noted(reports) -> None:
    result = _compare(reports, "he", "he_other_data")
    assert result.status == "unchanged", result.verdict
    changes = [l.flow_change for l in result.layers if l.flow_change is not None]
    assert changes and max(abs(math.log10(c)) for c in changes) < math.log10(1.5)  # data noise is far below 2x
    assert any("seed differs" in note for note in result.notes)


def test_weights_scaled_down_regress_by_the_predicted_factor(reports) -> None:
    """Scaling every hidden weight of a ReLU net by SCALE scales the backward signal by SCALE per layer:
    the first layer's signal relative to the head falls by SCALE**DEPTH (the head is unchanged)."""
    result = _compare(reports, "he", "shrunk")
    assert result.status == "regressed" and result.exit_code == 1
    first = result.layers[0]
    assert first.status == "regressed" and "towards vanishing" in first.reasons[0]
    predicted = SCALE ** DEPTH
    assert predicted / 3 < first.flow_change < predicted * 3, (first.flow_change, predicted)
    # the change grows geometrically with distance from the output: monotone in depth
    linears = [l.flow_change for l in result.layers if l.layer.isdigit() and int(l.layer) % 2 == 0 and int(l.layer) < 2 * DEPTH]
    assert all(a < b for a, b in zip(linears, linears[1:])), linears


def test_the_fix_is_an_improvement(reports) -> None:
    result = _compare(reports, "shrunk", "he")
    assert result.status == "improved" and result.exit_code == 0
    assert result.layers[0].status == "improved"
    assert any(f.change == "resolved" and f.kind == "vanishing_gradient" for f in result.findings)


def test_a_new_finding_in_the_fail_set_fails_even_within_tolerance(reports) -> None:
    dead_layer = str(2 * 4 + 1)  # the ReLU after Linear 4; every ReLU after it only sees zeros too
    lenient = {"tolerance": 1e9, "dead_tolerance": 1.0}  # no layer can regress on its numbers
    outside = _compare(reports, "he", "dead", fail_on=["exploding_gradient"], **lenient)
    assert outside.status == "changed" and outside.exit_code == 0
    new = [f for f in outside.findings if f.change == "new" and f.kind == "dead_relu"]
    assert new[0].layer == dead_layer and not any(f.fails for f in new)
    assert all(int(f.layer) >= int(dead_layer) for f in new)
    gated = _compare(reports, "he", "dead", fail_on=["dead_relu"], **lenient)
    assert gated.status == "regressed" and gated.exit_code == 1
    # and with default tolerances the dead ratio's jump (to 100%) is itself a regression
    default = _compare(reports, "he", "dead", fail_on=[])
    row = next(l for l in default.layers if l.layer == dead_layer)
    assert row.status == "regressed" and row.current_dead == 1.0 and any("dead units" in r for r in row.reasons)


def test_added_and_removed_layers_are_listed(tmp_path, reports) -> None:
    data = json.loads(reports["he"].read_text())
    data["layers"] = data["layers"][:-1] + [dict(data["layers"][-1], name="new_head")]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    result = compare(load_report(reports["he"], "baseline"), load_report(edited, "current"))
    statuses = {l.layer: l.status for l in result.layers}
    assert statuses["new_head"] == "added" and statuses[str(2 * DEPTH)] == "removed"


@pytest.mark.parametrize(("content", "message"), [
    (None, "not found"),
    ("{not json", "is not JSON"),
    ('{"hello": 1}', "is not a gradcheck JSON report"),
    ("[1, 2]", "is not a gradcheck JSON report"),
    ('{"schema_version": 999, "layers": []}', "has schema version 999"),
])
def test_unreadable_reports(tmp_path, content, message) -> None:
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message):
        load_report(path, "baseline")


# --- the command --------------------------------------------------------------------------------


def test_cli_exit_codes_and_formats(invoke, reports, tmp_path, monkeypatch) -> None:
    assert invoke("compare", reports["he"], reports["he_other_data"], "-q").exit_code == 0
    improved = invoke("compare", reports["shrunk"], reports["he"])
    assert improved.exit_code == 0 and "IMPROVED" in improved.stdout
    regressed = invoke("compare", reports["he"], reports["shrunk"])
    assert regressed.exit_code == 1 and "REGRESSED" in regressed.stdout and "towards vanishing" in regressed.stdout

    as_json = json.loads(invoke("compare", reports["he"], reports["shrunk"], "-F", "json").stdout)
    assert as_json["status"] == "regressed" and as_json["exit_code"] == 1 and as_json["layers"][0]["status"] == "regressed"

    markdown = invoke("compare", reports["he"], reports["shrunk"], "-F", "markdown").stdout
    assert markdown.startswith("### ❌ gradcheck compare: REGRESSED") and "| layer | status |" in markdown

    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    github = invoke("compare", reports["he"], reports["shrunk"], "-F", "github")
    assert github.exit_code == 1
    lines = github.stdout.splitlines()
    assert lines and all(line.startswith(("::error ", "::warning ", "::notice ")) for line in lines)
    assert lines[-1].startswith("::error title=gradcheck compare::REGRESSED")
    assert summary.read_text().startswith("earlier step\n### ❌ gradcheck compare")  # appended, not replaced

    out = tmp_path / "cmp.json"
    written = invoke("compare", reports["he"], reports["he"], "-o", out)
    assert written.exit_code == 0 and json.loads(out.read_text())["status"] == "unchanged"


def test_cli_fail_on_overrides_the_reports_set(invoke, reports) -> None:
    lenient = ("--tolerance", "1e9", "--dead-tolerance", "1")
    assert invoke("compare", reports["he"], reports["dead"], *lenient, "-q").exit_code == 1  # its gate: an all-dead layer is an error
    assert invoke("compare", reports["he"], reports["dead"], *lenient, "--fail-on", "exploding_gradient", "-q").exit_code == 0
    assert invoke("compare", reports["he"], reports["dead"], *lenient, "--fail-on", "dead_relu", "-q").exit_code == 1


def test_cli_bad_input_is_one_line_exit_2(invoke, reports, tmp_path) -> None:
    for args, message in [((reports["he"], tmp_path / "missing.json"), "not found"),
                          ((reports["he"], reports["he"], "--tolerance", "0.5"), "--tolerance"),
                          ((reports["he"], reports["he"], "--fail-on", "typo"), "unknown finding kind")]:
        result = invoke("compare", *args)
        assert result.exit_code == 2, result.output
        assert result.stderr.count("gradcheck: error:") == 1 and message in result.stderr and "Traceback" not in result.output


def test_schema_version_is_the_current_one(reports) -> None:
    assert json.loads(reports["he"].read_text())["schema_version"] == SCHEMA_VERSION


def test_cli_ctrl_c_and_internal_errors_share_the_boundary(invoke, reports, monkeypatch) -> None:
    import gradcheck_cli.report.codec as saved

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(saved, "read_document", interrupted)
    result = invoke("compare", reports["he"], reports["he"])
    assert result.exit_code == 130 and "interrupted" in result.stderr
    monkeypatch.setattr(saved, "read_document", lambda *_: 1 / 0)
    result = invoke("compare", reports["he"], reports["he"])
    assert result.exit_code == 4 and "internal error" in result.stderr and "Traceback" not in result.output
