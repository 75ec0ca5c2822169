"""The pytest plugin and ``assert_healthy``: gradient health as an assertion in a user's own test suite.

User suites run through ``pytester``: in-process for speed, and in a subprocess (``runpytest_subprocess``,
no ``-p`` flag) where the plugin must arrive through its ``pytest11`` entry point. Models are built
from first principles: a He-init ReLU MLP (healthy) and a bias-free chain of 20 Linear layers whose
weights are N(0, 5/sqrt(fan_in)), so each layer multiplies the signal by ~5 both ways (5^19 ~ 2e13).
"""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
import textwrap
from collections import OrderedDict

import pytest
import torch
from torch import nn

import gradcheck_cli
import gradcheck_cli.analysis.engine  # imported before the in-process pytester runs, which then reuse them
import gradcheck_cli.measure.instrument.modules
import gradcheck_cli.render.table
from gradcheck_cli.testing import health
from gradcheck_cli.errors import UsageError
from gradcheck_cli.testing.health import GradientHealth, assert_healthy
from gradcheck_cli.analysis.options import DEFAULT_FAIL_ON, FINDING_KINDS, Thresholds

pytest_plugins = ["pytester"]

def he_relu_mlp(depth=6, width=32):
    torch.manual_seed(0)
    layers = OrderedDict()
    for i in range(depth):
        linear = nn.Linear(width, width)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        nn.init.zeros_(linear.bias)
        layers[f"fc{i}"] = linear
        layers[f"relu{i}"] = nn.ReLU()
    return nn.Sequential(layers)


def exploding_chain(depth=20, width=16):
    torch.manual_seed(0)
    layers = OrderedDict()
    for i in range(depth):
        linear = nn.Linear(width, width, bias=False)
        nn.init.normal_(linear.weight, 0.0, 5 / math.sqrt(width))
        layers[f"fc{i}"] = linear
    return nn.Sequential(layers)


MODELS = "\n".join([
    "import math", "from collections import OrderedDict", "", "import torch", "from torch import nn", "", "",
    inspect.getsource(he_relu_mlp), "", inspect.getsource(exploding_chain),
])
"""The builders above as source, at the top of every user test file."""


def user_file(body: str) -> str:
    return MODELS + "\n\n" + textwrap.dedent(body)


@pytest.fixture
def autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entry-point plugins load in the runs under test, whatever the outer environment says."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)


# --- assert_healthy, called directly -------------------------------------------------------------


def test_healthy_model_returns_the_report():
    report = assert_healthy(he_relu_mlp(), torch.randn(64, 32))
    assert report.summary.status == "ok"
    assert report.run.fail_on == sorted(DEFAULT_FAIL_ON)
    assert report.run.device == "cpu"


def test_exploding_model_fails_with_verdict_and_findings_in_plain_text():
    with pytest.raises(AssertionError) as info:
        assert_healthy(exploding_chain(), torch.randn(32, 16))
    message = str(info.value)
    assert message.startswith("gradcheck: FAIL: exploding_gradient")
    assert "failing: exploding_gradient at fc0" in message
    assert "first bad layer: fc0" in message
    assert "error (fails)  exploding_gradient  fc0" in message  # the findings, from the CLI's renderer
    assert "exploding_activation" in message  # findings outside fail_on are listed too, not marked (fails)
    assert "\x1b" not in message and all(line == line.rstrip() for line in message.splitlines())
    assert info.value.report.summary.status == "fail"  # the whole report travels with the error


@pytest.mark.parametrize(
    ("fail_on", "fails"),
    [
        (None, True),  # the CLI default: exploding_gradient, nonfinite
        ("none", False),
        ("", False),
        ([], False),
        ("all", True),
        (["all"], True),
        ("dead_relu, saturated_activation", False),
        ("exploding_activation", True),
        (("vanishing_gradient", "exploding_gradient"), True),
        (frozenset({"init_mismatch"}), True),
    ],
)
def test_fail_on_takes_the_cli_spellings_and_iterables(fail_on, fails):
    model, x = exploding_chain(), torch.randn(32, 16)
    if fails:
        with pytest.raises(AssertionError, match="gradcheck: FAIL"):
            assert_healthy(model, x, fail_on=fail_on)
    else:
        assert assert_healthy(model, x, fail_on=fail_on).summary.status == "warn"


@pytest.mark.parametrize("fail_on", ["exploding", ["exploding_gradient", "exploding"]])
def test_unknown_kind_is_a_usage_error_naming_it(fail_on):
    with pytest.raises(UsageError, match="'exploding'"):
        health.resolve_fail_on(fail_on)


def test_thresholds_as_dict_or_object_and_other_options_pass_through():
    model = exploding_chain()
    loose = {"exploding_gradient_ratio": 1e20, "gradient_abs_max": 1e20, "exploding_activation_ratio": 1e20,
             "activation_abs_max": 1e20, "layer_gain": 1e9}
    report = assert_healthy(model, input_shapes=[(32, 16)], thresholds=loose, seed=3, batches=2, batch_size=16)
    assert report.run.thresholds["exploding_gradient_ratio"] == 1e20
    assert (report.run.seed, report.run.batches, report.run.batch_size) == (3, 2, 16)
    with pytest.raises(AssertionError):
        assert_healthy(model, input_shapes=[(32, 16)], thresholds=Thresholds())
    with pytest.raises(UsageError, match="unknown threshold"):
        assert_healthy(model, input_shapes=[(32, 16)], thresholds={"no_such_threshold": 1.0})


def test_tuple_and_dict_inputs():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    x, y = torch.randn(16, 8), torch.randn(16, 8)
    assert assert_healthy(TwoInputs(), (x, y)).summary.exit_code == 0
    assert assert_healthy(TwoInputs(), {"x": x, "y": y}).summary.exit_code == 0


def test_analyze_options_object_keeps_its_fail_on_unless_overridden():
    from gradcheck_cli import AnalyzeOptions

    model, x = exploding_chain(), torch.randn(32, 16)
    assert assert_healthy(model, x, options=AnalyzeOptions(fail_on=frozenset())).summary.status == "warn"
    with pytest.raises(AssertionError):
        assert_healthy(model, x, options=AnalyzeOptions(fail_on=frozenset()), fail_on="exploding_gradient")


def test_defaults_object_behind_the_fixture():
    model, x = exploding_chain(), torch.randn(32, 16)
    lenient = GradientHealth(fail_on="none", device="cpu")
    assert lenient.assert_healthy(model, x).summary.status == "warn"
    assert lenient.analyze(model, x).run.fail_on == []
    with pytest.raises(AssertionError, match="exploding_gradient"):
        lenient.assert_healthy(model, x, fail_on="exploding_gradient")  # the call wins over the default
    assert GradientHealth(fail_on=None, device=None).fail_on == DEFAULT_FAIL_ON
    assert GradientHealth("all").fail_on == frozenset(FINDING_KINDS)


def test_package_exports_assert_healthy_lazily():
    assert gradcheck_cli.assert_healthy is assert_healthy
    assert "assert_healthy" in gradcheck_cli.__all__
    code = ("import sys, gradcheck_cli, gradcheck_cli.testing.pytest_plugin; gradcheck_cli.assert_healthy; "
            "print(sorted(m for m in ('torch', 'rich', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- the plugin in a user's test suite -----------------------------------------------------------


def test_user_suite_healthy_passes_exploding_fails_with_layer_and_kind(pytester: pytest.Pytester, autoload):
    pytester.makepyfile(test_user=user_file('''
        from gradcheck_cli import assert_healthy

        def test_healthy():
            report = assert_healthy(he_relu_mlp(), torch.randn(64, 32))
            assert report.summary.status == "ok"

        def test_exploding():
            assert_healthy(exploding_chain(), torch.randn(32, 16))

        def test_exploding_allowed():
            assert_healthy(exploding_chain(), torch.randn(32, 16), fail_on="none")
    '''))
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*def test_exploding():",
        ">*assert_healthy(exploding_chain(), torch.randn(32, 16))",  # the user's own line
        "E*AssertionError: gradcheck: FAIL: exploding_gradient*",
        "E*failing: exploding_gradient at fc0",
        "E*error (fails)  exploding_gradient  fc0  value *",
    ])
    text = result.stdout.str()
    assert "health.py" not in text  # __tracebackhide__: no frames of ours
    assert "\x1b[" not in text


def test_fixture_and_ini_fail_on(pytester: pytest.Pytester, autoload):
    pytester.makepyfile(test_user=user_file('''
        def test_default_from_ini(gradcheck):
            report = gradcheck.assert_healthy(exploding_chain(), torch.randn(32, 16))
            assert report.run.fail_on == []

        def test_call_wins(gradcheck):
            gradcheck.assert_healthy(exploding_chain(), torch.randn(32, 16), fail_on="exploding_gradient")

        def test_analyze(gradcheck):
            report = gradcheck.analyze(he_relu_mlp(), input_shapes=[(64, 32)])
            assert report.summary.status == "ok" and report.run.device == "cpu"
    '''))
    pytester.makeini("[pytest]\ngradcheck_fail_on = none\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_user.py::test_call_wins - AssertionError: gradcheck: FAIL*"])

    pytester.makeini("[pytest]\ngradcheck_fail_on = exploding_activation, init_mismatch\n")
    result = pytester.runpytest("-k", "default_from_ini")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E*failing: init_mismatch at fc0, fc1, fc2, fc3, fc4, fc5, fc6, fc7, ... (20 in all)",
                                 "E*failing: exploding_activation at fc19",
                                 "E*fail_on: exploding_activation, init_mismatch"])


def test_ini_device_reaches_the_analysis(pytester: pytest.Pytester, autoload):
    pytester.makepyfile(test_user=user_file('''
        def test_device(gradcheck):
            gradcheck.analyze(he_relu_mlp(), torch.randn(8, 32))

        def test_call_wins(gradcheck):
            assert gradcheck.analyze(he_relu_mlp(), torch.randn(8, 32), device="cpu").run.device == "cpu"
    '''))
    pytester.makeini("[pytest]\ngradcheck_device = tpu-of-the-future\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*UsageError: unknown device 'tpu-of-the-future'*"])


def test_misspelt_ini_fail_on_stops_the_session(pytester: pytest.Pytester, autoload):
    pytester.makepyfile(test_user="def test_nothing(): pass\n")
    pytester.makeini("[pytest]\ngradcheck_fail_on = exploding\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*gradcheck_fail_on = 'exploding' in *tox.ini: unknown finding kind 'exploding'*"])


def test_entry_point_loads_the_plugin_in_a_subprocess(pytester: pytest.Pytester, autoload):
    pytester.makepyfile(test_user=user_file('''
        def test_exploding(gradcheck):
            gradcheck.assert_healthy(exploding_chain(), torch.randn(32, 16))
    '''))
    result = pytester.runpytest_subprocess()  # no -p: only the pytest11 entry point can provide the fixture
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E*exploding_gradient*", "E*failing: exploding_gradient at fc0"])

    pytester.makepyfile(test_user="def test_fixture(gradcheck): pass\n")
    result = pytester.runpytest_subprocess("-p", "no:gradcheck")  # the plugin's name is the entry point's
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'gradcheck' not found*"])


def test_pytest_start_up_does_not_import_torch(pytester: pytest.Pytester, autoload):
    pytester.makeconftest('''
        import sys

        def pytest_report_collectionfinish(config):
            heavy = sorted(m for m in ("torch", "rich", "numpy") if m in sys.modules)
            return [f"gradcheck plugin: {config.pluginmanager.hasplugin('gradcheck')}", f"heavy modules: {heavy}"]
    ''')
    result = pytester.runpytest_subprocess("--co")  # an empty suite: nothing but pytest and its plugins
    result.stdout.fnmatch_lines(["gradcheck plugin: True", "heavy modules: []"])
