"""Guarantee 8: argument size, result size, task run time and batch size are bounded, each
configurable, each breach a clear error; a runaway task fails alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from common import keys
from tests.reliability.conftest import FAST_RECOVERY, Procs, assert_exactly_once, parse_json_results, write_tasks

pytestmark = pytest.mark.reliability


def test_each_limit_fails_only_its_task(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(redis_url, FAST_RECOVERY)
    worker = procs.worker("--task-timeout", "1", "--max-result-bytes", "50")
    lines = [
        "add 1 2",
        "sleep 30",  # blocks in a system call
        "sha256 x",  # a 66-byte result
        "rt.spin 30",  # a CPU loop that never yields
        "multiply 2 3",
        "echo " + "y" * 200,  # 200-byte arguments
        "echo hi",
    ]
    batch = write_tasks(tmp_path / "limits.txt", lines)
    done = procs.run(
        "submit",
        str(batch),
        "--json",
        "--no-check",
        "--chunk-size",
        str(len(lines)),
        "--max-arg-bytes",
        "100",
        "--timeout",
        "60",
    )
    assert done.returncode == 1, done.stderr
    by_index = assert_exactly_once(parse_json_results(done.stdout), len(lines))
    outcome = {i: r["result"] if r["ok"] else (r["error"]["type"], r["error"]["message"]) for i, r in by_index.items()}
    assert outcome[0] == 3 and outcome[4] == 6 and outcome[6] == "hi"  # the rest of the chunk is unharmed
    assert outcome[1] == ("TaskTimeout", "task ran longer than 1 s and was stopped")
    assert outcome[3] == ("TaskTimeout", "task ran longer than 1 s and was stopped")
    assert outcome[2][0] == "LimitExceeded" and "over the 50-byte limit" in outcome[2][1]
    assert outcome[5][0] == "LimitExceeded" and "over the 100-byte limit" in outcome[5][1]
    assert worker.poll() is None


def test_batch_size_limit(
    redis_url: str, real_client: redis.Redis, procs_factory: Callable[..., Procs], tmp_path: Path
) -> None:
    procs = procs_factory(redis_url, FAST_RECOVERY)
    batch = write_tasks(tmp_path / "ten.txt", [f"add {i} 1" for i in range(10)])

    refused = procs.run("submit", str(batch), "--no-check", "--max-batch-tasks", "5")
    assert refused.returncode == 2
    assert "batch has 10 tasks, over the limit of 5; nothing was submitted" in refused.stderr
    assert real_client.llen(keys.rq_queue_key("tasks")) == 0

    # With a fixed chunk size the input is not read ahead: the limit stops it mid-way, and what was
    # already submitted is cancelled rather than left to run.
    env = {"DW_MAX_BATCH_TASKS": "5"}
    stopped = procs.run("submit", str(batch), "--no-check", "--chunk-size", "2", env=env)
    assert stopped.returncode == 2
    assert "more than 5 tasks" in stopped.stderr, stopped.stderr
    assert real_client.llen(keys.rq_queue_key("tasks")) == 0
