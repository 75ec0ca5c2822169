"""pytest plugin (entry point ``pytest11: gradcheck``): the ``gradcheck`` fixture and its ini options.

Loaded into every pytest session of an environment where gradcheck is installed, so it must stay
cheap: importing it pulls in neither torch nor rich (only :mod:`gradcheck_cli.testing.health` and the
option parsers); the analysis machinery is imported when a test first calls the fixture.
Disable it with ``-p no:gradcheck``.

ini options (``[pytest]``, ``[tool.pytest.ini_options]``, ...):

``gradcheck_fail_on``
    Default ``fail_on`` of ``gradcheck.assert_healthy``: ``all``, ``none`` or a comma list of
    severities and finding kinds (the CLI's ``--fail-on``). Unset: ``error`` (every finding of severity error).
``gradcheck_device``
    Default ``device`` of the fixture's calls: ``cpu`` (unset), ``cuda``, ``cuda:N`` or ``auto``.
"""

from __future__ import annotations

import pytest

from gradcheck_cli.errors import GradcheckError
from gradcheck_cli.testing.health import GradientHealth, resolve_fail_on


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "gradcheck_fail_on",
        "gradcheck fixture: finding kinds that fail assert_healthy ('all', 'none' or a comma list; "
        "default error: every finding of severity error)",
        default="",
    )
    parser.addini("gradcheck_device", "gradcheck fixture: device to analyse on (cpu, cuda, cuda:N, auto; default cpu)",
                  default="")


def pytest_configure(config: pytest.Config) -> None:
    """A misspelt kind in ``gradcheck_fail_on`` stops the session once, naming the file, instead of
    erroring every test that uses the fixture."""
    fail_on = _ini(config, "gradcheck_fail_on")
    try:
        resolve_fail_on(fail_on)
    except GradcheckError as exc:
        raise pytest.UsageError(f"gradcheck_fail_on = {fail_on!r} in {config.inipath}: {exc}") from None


@pytest.fixture
def gradcheck(pytestconfig: pytest.Config) -> GradientHealth:
    """``gradcheck.assert_healthy(model, inputs, ...)`` and ``gradcheck.analyze(...)`` with the ini defaults.

    Same signatures as :func:`gradcheck_cli.assert_healthy`; keywords given in the call win.
    """
    return GradientHealth(fail_on=_ini(pytestconfig, "gradcheck_fail_on"), device=_ini(pytestconfig, "gradcheck_device"))


def _ini(config: pytest.Config, name: str) -> str | None:
    """The ini value, None when unset or blank (a blank fail_on means the default set, not 'none')."""
    value = config.getini(name)
    if isinstance(value, (list, tuple)):  # a TOML array in native [tool.pytest]
        value = ",".join(str(v) for v in value)
    value = str(value).strip()
    return value or None
