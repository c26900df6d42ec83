"""`--tasks` on the command line: `worker` and `dispatcher run` warn of a module with no task, and refuse a clash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EMPTY_MODULE = "def helper(x):\n    return x\n"
CLASHING_MODULE = "from common import task\n\n@task(name='shared.name')\ndef {func}() -> int:\n    return 1\n"


def modules_in(tmp_path: Path, **sources: str) -> dict[str, str]:
    """Write each module to tmp_path; the environment that makes them importable."""
    for name, source in sources.items():
        (tmp_path / f"{name}.py").write_text(source)
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def run_worker(*args: str, redis_url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "worker", "--burst", *args]
    env = {**os.environ, "REDIS_URL": redis_url, **env}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)


def test_worker_warns_of_a_task_module_that_registers_no_task(tmp_path: Path, redis_url: str) -> None:
    env = modules_in(tmp_path, helpers_only=EMPTY_MODULE)
    done = run_worker("--tasks", "helpers_only", "--tasks", "tests.usertasks", redis_url=redis_url, env=env)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "registers no task" in line]
    assert len(warnings) == 1 and "'helpers_only'" in warnings[0], done.stderr


def test_worker_refuses_a_task_name_clash_naming_both_modules(tmp_path: Path, redis_url: str) -> None:
    env = modules_in(tmp_path, first_mod=CLASHING_MODULE.format(func="a"), second_mod=CLASHING_MODULE.format(func="b"))
    done = run_worker("--tasks", "first_mod", "--tasks", "second_mod", redis_url=redis_url, env=env)
    assert done.returncode == 2, done.stderr
    assert "'shared.name'" in done.stderr and "first_mod.a" in done.stderr and "second_mod.b" in done.stderr


def test_run_local_warns_of_a_task_module_that_registers_no_task(tmp_path: Path) -> None:
    env = modules_in(tmp_path, helpers_only=EMPTY_MODULE)
    done = run_cli("run", "-", "--local", "1", "--tasks", "helpers_only", "--json", stdin="add 1 2\n", env=env)
    assert done.returncode == 0, done.stderr
    assert "task module 'helpers_only' registers no task" in done.stderr


def test_run_local_refuses_a_task_name_clash_naming_both_modules(tmp_path: Path) -> None:
    env = modules_in(tmp_path, first_mod=CLASHING_MODULE.format(func="a"), second_mod=CLASHING_MODULE.format(func="b"))
    args = ["run", "-", "--local", "1", "--tasks", "first_mod", "--tasks", "second_mod"]
    done = run_cli(*args, stdin="add 1 2\n", env=env)
    assert done.returncode == 2, done.stderr
    assert "'shared.name'" in done.stderr and "first_mod.a" in done.stderr and "second_mod.b" in done.stderr
