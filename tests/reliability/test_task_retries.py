"""Retries and time limits declared on a task, on real worker processes (serial, thread and async
slots): a flaky task gives its result with its attempts, an error outside `retry_on` is not retried,
and a task over its own limit fails alone with TaskTimeout while its slot goes on."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import (
    FAST_RECOVERY,
    TASK_MODULE,
    Procs,
    assert_exactly_once,
    parse_json_results,
    write_tasks,
)

pytestmark = pytest.mark.reliability

MODULES = {"DW_TASK_MODULES": f"{TASK_MODULE} tests.reliability.retry_tasks"}
SLOTS = [
    pytest.param([], id="serial"),
    pytest.param(["--threads", "3"], id="threads"),
    pytest.param(["--async-slots", "3"], id="async"),
]
STOPPED = ("TaskTimeout", "task ran longer than 1 s and was stopped")


def _attempts(counters: Path, key: str) -> int:
    path = counters / key
    return path.stat().st_size if path.exists() else 0


@pytest.mark.parametrize("slots", SLOTS)
def test_flaky_tasks_are_retried_and_report_their_attempts(
    redis_url: str, procs_factory: Callable[..., Procs], tmp_path: Path, slots: list[str]
) -> None:
    counters = tmp_path / "counters"
    counters.mkdir()
    procs = procs_factory(redis_url, {**FAST_RECOVERY, **MODULES})
    worker = procs.worker("--task-timeout", "60", *slots)
    lines = [
        f"rt.flaky {counters} twice 2",  # fails twice with OSError, then succeeds
        f"rt.flaky {counters} never 0",
        f"rt.flaky {counters} always 99",  # keeps failing: its last error, after 1 + 3 attempts
        f"rt.picky {counters} picky",  # ValueError is not in its retry_on
        "add 1 2",
    ]
    batch = write_tasks(tmp_path / "flaky.txt", lines)
    done = procs.run("submit", str(batch), "--json", "--no-check", "--timeout", "60")
    assert done.returncode == 1, done.stderr
    by_index = assert_exactly_once(parse_json_results(done.stdout), len(lines))
    assert (by_index[0]["ok"], by_index[0]["result"], by_index[0]["attempts"]) == (True, 3, 3)
    assert (by_index[1]["result"], "attempts" in by_index[1]) == (1, False)
    assert by_index[2]["error"] == {"type": "OSError", "message": "attempt 4 of always failed"}
    assert by_index[2]["attempts"] == 4
    assert by_index[3]["error"]["type"] == "ValueError" and "attempts" not in by_index[3]
    assert by_index[4]["result"] == 3
    assert (_attempts(counters, "twice"), _attempts(counters, "always"), _attempts(counters, "picky")) == (3, 4, 1)

    human = procs.run("results", _batch_id(done.stderr), "--timeout", "60")
    assert "Task 1: rt.flaky" in human.stdout and "= 3 after 3 attempts (by " in human.stdout, human.stdout
    assert worker.poll() is None


@pytest.mark.parametrize("slots", SLOTS)
def test_a_task_over_its_own_time_limit_fails_alone_and_its_slot_goes_on(
    redis_url: str, procs_factory: Callable[..., Procs], tmp_path: Path, slots: list[str]
) -> None:
    procs = procs_factory(redis_url, {**FAST_RECOVERY, **MODULES})
    worker = procs.worker("--task-timeout", "60", *slots)  # the tasks' own limit (1 s) is what stops them
    lines = [f"rt.limited 3600 {i}" for i in range(4)]  # more runaways than slots: each slot is reused
    lines += [f"rt.roomy {i}" for i in range(4, 8)]
    lines += ["rt.spinlimited 3600", "rt.alimited 3600 9", "rt.aroomy 10", "add 2 3"]
    batch = write_tasks(tmp_path / "limits.txt", lines)
    done = procs.run("submit", str(batch), "--json", "--no-check", "--timeout", "90", timeout=120)
    assert done.returncode == 1, done.stderr
    by_index = assert_exactly_once(parse_json_results(done.stdout), len(lines))
    outcome = {i: r["result"] if r["ok"] else (r["error"]["type"], r["error"]["message"]) for i, r in by_index.items()}
    assert [outcome[i] for i in range(4)] == [STOPPED] * 4
    assert [outcome[i] for i in range(4, 8)] == [4, 5, 6, 7]
    assert outcome[8] == STOPPED and outcome[9] == STOPPED
    assert (outcome[10], outcome[11]) == (10, 5)
    assert worker.poll() is None


def _batch_id(stderr: str) -> str:
    """The batch id the summary names (`dispatcher results ID`)."""
    found = re.search(r"dispatcher results ([0-9A-Za-z_-]+)", stderr)
    assert found, stderr
    return found.group(1)
