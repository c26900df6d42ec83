"""`dispatcher dashboard` without rq-dashboard installed: --help works, and the error names the install command."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dispatcher import dashboard
from dispatcher.cli import main

BLOCK_RQ_DASHBOARD = "import sys; sys.modules['rq_dashboard'] = None; "


@pytest.fixture
def no_rq_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """rq-dashboard made unimportable, whether or not it is installed."""
    for name in ("rq_dashboard", "rq_dashboard.cli", "rq_dashboard.web"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.usefixtures("no_rq_dashboard")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_dashboard_help_works_without_rq_dashboard(flag: str) -> None:
    result = CliRunner().invoke(main, ["dashboard", flag], prog_name="dispatcher")
    assert result.exit_code == 0, result.output
    assert "Usage: dispatcher dashboard" in result.output
    assert "rq-dashboard is not installed" in result.output
    assert dashboard.install_command() in result.output


@pytest.mark.usefixtures("no_rq_dashboard")
def test_dashboard_without_rq_dashboard_says_how_to_install_it() -> None:
    result = CliRunner().invoke(main, ["dashboard", "--json"], prog_name="dispatcher")
    assert result.exit_code == 2
    assert "rq-dashboard is not installed" in result.output
    assert dashboard.install_command() in result.output


def test_python_m_dispatcher_dashboard_without_rq_dashboard_fails_without_a_traceback() -> None:
    code = BLOCK_RQ_DASHBOARD + "import runpy; runpy.run_module('dispatcher.dashboard', run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", code, "--json"], capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "rq-dashboard is not installed" in done.stderr
    assert "[monitoring]" in done.stderr


def test_the_install_command_fits_how_this_package_was_installed() -> None:
    editable = json.dumps({"dir_info": {"editable": True}, "url": "file:///src/redis%20dispatch"})
    assert dashboard.install_command(editable).endswith("-m pip install -e '/src/redis dispatch[monitoring]'")
    checkout = json.dumps({"dir_info": {}, "url": "file:///src/rd"})
    assert dashboard.install_command(checkout).endswith("-m pip install '/src/rd[monitoring]'")
    wheel = json.dumps({"archive_info": {}, "url": "file:///tmp/redis_dispatch-0.1.0-py3-none-any.whl"})
    assert dashboard.install_command(wheel).endswith("-m pip install 'redis-dispatch[monitoring]'")
    assert dashboard.install_command(None).endswith("-m pip install 'redis-dispatch[monitoring]'")
    assert dashboard.install_command(None).startswith(sys.executable)


def test_the_extra_in_the_install_command_brings_rq_dashboard() -> None:
    requirements = importlib.metadata.requires(dashboard.DISTRIBUTION) or []
    marker = f'extra == "{dashboard.EXTRA}"'
    assert any(r.startswith("rq-dashboard") and marker in r for r in requirements), requirements
    assert f"[{dashboard.EXTRA}]" in dashboard.install_command()
