"""One result per input line: a task name no live worker offers is that line's failed result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from common import keys
from common.errors import TaskNotOffered
from dispatcher import RedisExecutor
from tests.conftest import WorkerFactory, run_cli
from tests.integration.test_executor import USER_ENV, wait_offered
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

LINES = 6000
LATE = 5001
"""The 1-based line that names a task no worker offers."""


def _late_unknown_batch(tmp_path: Path) -> Path:
    batch = tmp_path / "late.txt"
    batch.write_text("".join("thumbnails.make a.png\n" if n == LATE else f"add {n} 1\n" for n in range(1, LINES + 1)))
    return batch


def test_an_unknown_name_on_a_late_line_fails_that_line_alone(
    redis_url: str, start_worker: WorkerFactory, real_client: redis.Redis, tmp_path: Path
) -> None:
    start_worker()
    wait_offered(real_client, "add")
    done = run_cli(
        "submit", str(_late_unknown_batch(tmp_path)), "--json", "--timeout", "120", env={"REDIS_URL": redis_url}
    )
    assert done.returncode == 1, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted(row["index"] for row in rows) == list(range(LINES))
    failed = [row for row in rows if not row["ok"]]
    assert len(failed) == 1
    assert failed[0]["index"] == LATE - 1 and failed[0]["task"] == "thumbnails.make"
    assert failed[0]["error"]["type"] == "TaskNotOffered"
    assert "thumbnails.make" in failed[0]["error"]["message"] and "add" in failed[0]["error"]["message"]
    assert failed[0]["worker"] == "dispatcher"
    assert all(row["result"] == row["args"][0] + 1 for row in rows if row["ok"])
    assert done.stderr.count("thumbnails.make") == 1, done.stderr
    assert f"{LINES} tasks, {LINES - 1} ok, 1 failed" in done.stderr
    batch_id = real_client.zrange(keys.BATCHES, 0, -1)[0].decode()
    record = real_client.hgetall(keys.batch_key(batch_id))
    assert record[b"state"] == b"submitted" and record[b"total"] == str(LINES).encode()
    assert not [k for k in real_client.scan_iter(keys.RQ_QUEUE_PREFIX + "*thumbnails*")], (
        "an unoffered task was enqueued"
    )

    again = run_cli("results", batch_id, "--json", env={"REDIS_URL": redis_url})
    assert again.returncode == 1 and len(again.stdout.splitlines()) == LINES


def test_strict_refuses_the_whole_batch_before_enqueueing(
    redis_url: str, start_worker: WorkerFactory, real_client: redis.Redis, tmp_path: Path
) -> None:
    start_worker()
    wait_offered(real_client, "add")
    batch = _late_unknown_batch(tmp_path)
    refused = run_cli("submit", str(batch), "--strict", env={"REDIS_URL": redis_url})
    assert refused.returncode == 2, refused.stderr
    assert "thumbnails.make" in refused.stderr and f"task {LATE} of the input" in refused.stderr
    assert real_client.zcard(keys.BATCHES) == 0 and not list(real_client.scan_iter(keys.RQ_QUEUE_PREFIX + "*"))

    piped = run_cli("submit", "-", "--strict", stdin=batch.read_text(), env={"REDIS_URL": redis_url})
    assert piped.returncode == 2 and "thumbnails.make" in piped.stderr
    malformed = run_cli("submit", "-", "--strict", stdin='add 1 2\necho "unclosed\n', env={"REDIS_URL": redis_url})
    assert malformed.returncode == 2 and "line 2" in malformed.stderr
    assert real_client.zcard(keys.BATCHES) == 0 and not list(real_client.scan_iter(keys.RQ_QUEUE_PREFIX + "*"))


def test_with_no_worker_the_batch_waits_for_one(
    redis_url: str, start_worker: WorkerFactory, real_client: redis.Redis, tmp_path: Path
) -> None:
    batch = tmp_path / "early.txt"
    batch.write_text("add 1 2\nadd 3 4\nmultiply 5 6\n")
    log = tmp_path / "dispatcher.err"
    with log.open("w") as err:
        dispatcher = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "submit", str(batch), "--json", "--timeout", "120"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "REDIS_URL": redis_url},
        )
        try:
            wait_until(lambda: real_client.llen(keys.rq_queue_key("tasks")) > 0, 30, "the batch to be enqueued")
            assert "wait for a worker" in log.read_text()
            start_worker()
            out, _ = dispatcher.communicate(timeout=120)
        finally:
            if dispatcher.poll() is None:
                dispatcher.kill()
    assert dispatcher.returncode == 0, log.read_text()
    assert sorted(json.loads(line)["result"] for line in out.splitlines()) == [3, 7, 30]


def test_run_fails_an_unknown_name_alone(tmp_path: Path) -> None:
    batch = tmp_path / "run.txt"
    batch.write_text("add 1 2\nthumbnails.make a.png\nadd 3 4\n")
    done = run_cli("run", str(batch), "--local", "1", "--json", "--timeout", "120")
    assert done.returncode == 1, done.stderr
    rows = {row["index"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert rows[0]["result"] == 3 and rows[2]["result"] == 7
    assert rows[1]["error"]["type"] == "TaskNotOffered"


def test_the_executor_enqueues_when_no_worker_is_live_and_the_task_waits(
    redis_url: str, start_worker: WorkerFactory, real_client: redis.Redis
) -> None:
    with RedisExecutor(redis_url) as executor:
        waiting = executor.submit("images.resize", "a.png", 9)  # no live worker: not refused
        wait_until(lambda: real_client.llen(keys.rq_queue_key("tasks@images.resize")) == 1, 30, "the task to be queued")
        start_worker("--tasks", "tests.usertasks", env=USER_ENV)
        assert waiting.result(timeout=60) == "a.png@9w"
    with RedisExecutor(redis_url) as executor, pytest.raises(TaskNotOffered):
        executor.submit("thumbnails.make", "a.png")  # now a live worker exists, and none offers it
