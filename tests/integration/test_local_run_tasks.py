"""`dispatcher run --local N --tasks MOD`: user tasks in local mode, and no hint to reattach to a Redis that is gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.test_local_mode import assert_no_leftovers, subreaper  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

USER_LINES = "images.resize a.png 100\nusertasks.double 21\nadd 1 2\n"
EXPECTED = {0: "a.png@100w", 1: 42, 2: 3}


def results_of(stdout: str) -> dict[int, object]:
    records = [json.loads(line) for line in stdout.splitlines()]
    assert all(record["ok"] for record in records), records
    return {record["index"]: record["result"] for record in records}


def test_run_local_serves_the_task_modules_given_with_tasks(tmp_path: Path) -> None:
    batch = tmp_path / "tasks.txt"
    batch.write_text(USER_LINES)
    done = run_cli("run", str(batch), "--local", "1", "--tasks", "tests.usertasks", "--json")
    assert done.returncode == 0, done.stderr
    assert results_of(done.stdout) == EXPECTED


def test_run_local_takes_task_modules_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "localtasks.py").write_text(
        "from common import task\n\n@task(name='local.triple')\ndef triple(x: int) -> int:\n    return 3 * x\n"
    )
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    env = {"DW_TASK_MODULES": "localtasks tests.usertasks", "PYTHONPATH": path}
    done = run_cli("run", "-", "--local", "1", "--json", stdin=USER_LINES + "local.triple 5\n", env=env)
    assert done.returncode == 0, done.stderr
    assert results_of(done.stdout) == {**EXPECTED, 3: 15}


def test_run_local_names_a_task_module_that_cannot_be_imported(tmp_path: Path) -> None:
    done = run_cli("run", "-", "--local", "1", "--tasks", "no_such_task_module", stdin="add 1 2\n")
    assert done.returncode == 2, done.stderr
    assert "cannot import task module 'no_such_task_module'" in done.stderr


def start_run(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """`dispatcher run` with its stderr in tmp_path/stderr: a pipe would wait for every process that
    inherited it, hiding a worker process left running."""
    argv = [sys.executable, "-m", "dispatcher", "run", *args]
    with (tmp_path / "stderr").open("w") as stderr:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)


def test_a_timed_out_local_run_gives_no_reattach_hint(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    children = request.getfixturevalue("subreaper")
    batch = tmp_path / "tasks.txt"
    batch.write_text("sleep 30\n")
    process = start_run(tmp_path, str(batch), "--local", "1", "--timeout", "0.5")
    process.communicate(timeout=60)
    err = (tmp_path / "stderr").read_text()
    assert process.returncode == 4, err
    assert "timed out" in err
    assert "dispatcher results" not in err
    assert "local mode" in err
    assert_no_leftovers(children)  # the processes the workers forked too


def test_an_interrupted_local_run_gives_no_reattach_hint(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    children = request.getfixturevalue("subreaper")
    batch = tmp_path / "tasks.txt"
    batch.write_text("add 1 2\n" + "sleep 30\n" * 4)
    process = start_run(tmp_path, str(batch), "--local", "1", "--json", "--chunk-size", "1")
    assert process.stdout is not None
    process.stdout.readline()  # the batch is running: a first result arrived
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    err = (tmp_path / "stderr").read_text()
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert "dispatcher results" not in err
    assert "local mode" in err
    assert_no_leftovers(children)  # the processes the workers forked too
