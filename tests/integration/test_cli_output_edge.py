"""A closed stdout (`dispatcher ... | head -1`) ends the dispatcher quietly, as it ends any Unix tool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import WorkerFactory, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EXIT_BROKEN_PIPE = 141


def first_line_then_close(redis_url: str, *args: str) -> tuple[int, str]:
    """Run `dispatcher ARGS | head -1`: read one line, close the pipe; return the exit code and stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "REDIS_URL": redis_url},
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline()
    process.stdout.close()
    err = process.stderr.read().decode()
    process.stderr.close()
    return process.wait(120), err


def big_batch_command(command: str, redis_url: str, tmp_path: Path) -> list[str]:
    """The arguments of `dispatcher submit` of 20,000 tasks, or of `dispatcher results` of such a
    batch submitted first: far more output than a pipe holds."""
    batch = tmp_path / "tasks.txt"
    batch.write_text("".join(f"add {i} 1\n" for i in range(20_000)))
    if command == "submit":
        return ["submit", str(batch), "--json"]
    submitted = run_cli("submit", str(batch), "--no-wait", env={"REDIS_URL": redis_url})
    assert submitted.returncode == 0, submitted.stderr
    return ["results", submitted.stdout.strip(), "--json"]


@pytest.mark.parametrize("command", ["results", "submit"])
def test_a_closed_stdout_ends_the_dispatcher_quietly(
    command: str, redis_url: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    start_worker()
    args = big_batch_command(command, redis_url, tmp_path)
    code, err = first_line_then_close(redis_url, *args)
    assert code == EXIT_BROKEN_PIPE, err
    assert "Redis" not in err and "Broken pipe" not in err and "Traceback" not in err, err
    assert [line for line in err.splitlines() if "submitting" not in line] == [], err


@pytest.mark.parametrize("command", ["results", "submit"])
def test_a_full_disk_under_the_output_is_told_as_such(
    command: str, redis_url: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    start_worker()
    args = big_batch_command(command, redis_url, tmp_path)
    env = {**os.environ, "REDIS_URL": redis_url}
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "dispatcher", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 74, done.stderr
    assert "cannot write the results: No space left on device" in done.stderr, done.stderr
    assert "Redis" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "dispatcher results" in done.stderr, done.stderr  # what became of the batch, and how to follow it
