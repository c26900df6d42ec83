"""Local mode and the demo: real redis-server, real workers, and nothing left running afterwards."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PR_SET_CHILD_SUBREAPER = 36


def children_of_this_process() -> set[int]:
    me = str(os.getpid())
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


@pytest.fixture
def subreaper() -> Iterator[set[int]]:
    """Adopt orphans of the processes we start, so a leaked grandchild shows up as our child."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    yield children_of_this_process()
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0)


def assert_no_leftovers(before: set[int]) -> None:
    """Every process the run started (adopted by the subreaper if orphaned) exits; each is reaped."""

    def none_left() -> bool:
        extra = children_of_this_process() - before
        for pid in extra:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        return not extra

    wait_until(none_left, 15, "every process the run started to exit", interval=0.1)


def test_run_local_completes_a_batch_and_stops_everything(tmp_path: Path, subreaper: set[int]) -> None:
    batch = tmp_path / "tasks.txt"
    batch.write_text("".join(f"multiply {i} 3\n" for i in range(2000)))
    done = run_cli("run", str(batch), "--local", "2", "--json")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(r["index"] for r in records) == list(range(2000))
    assert all(r["result"] == 3 * r["index"] for r in records)
    assert_no_leftovers(subreaper)


def test_ctrl_c_during_run_local_leaves_no_process_behind(tmp_path: Path, subreaper: set[int]) -> None:
    batch = tmp_path / "tasks.txt"
    batch.write_text("".join("sleep 0.05\n" for _ in range(400)))
    process = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "run", str(batch), "--local", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.readline()  # the batch is running: a first result arrived
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert_no_leftovers(subreaper)


def test_demo_prints_the_classic_log_format(subreaper: set[int]) -> None:
    done = run_cli("demo", "--pace", "0")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "[Dispatcher] Starting 3 workers..."
    assert {f"[Worker {i}] Started" for i in range(3)} <= set(lines)
    assert "[Dispatcher] Received task 1" in lines
    assert any(line.startswith("[Worker ") and line.endswith("Processing task 1: 10 add 5") for line in lines)
    assert any(line.startswith("[Dispatcher] Got result: Task 1 = 15 (by Worker ") for line in lines)
    assert any("Task 10 failed: ZeroDivisionError: division by zero" in line for line in lines)
    assert sum(line.startswith("[Dispatcher] Got result: ") for line in lines) == 12
    # the workers' own start and stop lines would break the classic format on a terminal
    assert " started: " not in done.stderr and " stopped: " not in done.stderr, done.stderr
    assert_no_leftovers(subreaper)
