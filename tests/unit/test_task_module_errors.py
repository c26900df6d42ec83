"""A task module that fails while it is imported stops the worker as a bad task module (exit 2),
with a message naming the module, the error and where it was raised; not a traceback and exit 1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from common import default_catalogue
from common.errors import ConfigurationError
from worker.cli import main
from worker.runtime import import_task_modules


@pytest.fixture
def broken_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module (in tmp_path, importable) whose second line raises."""
    name = f"broken_tasks_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text("X = 1\nraise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(default_catalogue, "_tasks", dict(default_catalogue._tasks))
    yield name
    sys.modules.pop(name, None)


def test_an_error_raised_while_importing_is_a_configuration_error(broken_module: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        import_task_modules([broken_module])
    message = str(caught.value)
    assert broken_module in message and "RuntimeError: boom at import" in message
    assert f"{broken_module}.py, line 2" in message


def test_the_worker_exits_2_with_one_line(broken_module: str) -> None:
    result = CliRunner().invoke(main, ["--tasks", broken_module, "--burst", "--redis-url", "redis://localhost:1/0"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert f"worker: cannot import task module {broken_module!r}" in result.output
