"""The CLI's task-offered check, user task modules served by `worker --tasks`, status --watch, rq info."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from common import keys
from tests.conftest import ROOT, WorkerFactory, run_cli
from tests.integration.test_executor import USER_ENV, wait_offered

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_an_unoffered_task_fails_alone_listing_what_is_offered(
    redis_url: str, start_worker: WorkerFactory, real_client: redis.Redis, tmp_path: Path
) -> None:
    # Behaviour changed: an unoffered name used to refuse the whole batch (exit 2, nothing enqueued);
    # it is now that line's failed result, never enqueued, and the rest of the batch runs (exit 1).
    start_worker()
    wait_offered(real_client, "add")
    batch = tmp_path / "tasks.txt"
    batch.write_text("add 1 2\nimages.resize a.png 10\n")
    done = run_cli("submit", str(batch), "--json", "--ordered", env={"REDIS_URL": redis_url})
    assert done.returncode == 1, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["result"] == 3 and second["error"]["type"] == "TaskNotOffered"
    assert "'images.resize'" in second["error"]["message"] and "add, divide, echo" in second["error"]["message"]
    assert "'images.resize' (1 task)" in done.stderr
    assert real_client.llen(keys.rq_queue_key("tasks@images.resize")) == 0

    queued = run_cli("submit", str(batch), "--no-check", "--no-wait", env={"REDIS_URL": redis_url})
    assert queued.returncode == 0, queued.stderr
    assert real_client.llen(keys.rq_queue_key("tasks@images.resize")) == 1  # waits for a worker that offers it


def test_a_name_first_seen_after_chunks_were_enqueued_fails_alone(
    redis_url: str, start_worker: WorkerFactory, real_client: redis.Redis
) -> None:
    # Behaviour changed: such a name used to abort the batch (state `aborted`, exit 2).
    start_worker()
    wait_offered(real_client, "add")
    lines = "add 1 2\nadd 3 4\nbogus 1\nadd 5 6\n"
    done = run_cli("submit", "-", "--json", "--chunk-size", "1", stdin=lines, env={"REDIS_URL": redis_url})
    assert done.returncode == 1, done.stderr
    rows = {row["index"]: row for row in map(json.loads, done.stdout.splitlines())}
    assert [rows[i]["result"] for i in (0, 1, 3)] == [3, 7, 11] and rows[2]["error"]["type"] == "TaskNotOffered"
    batch_id = real_client.zrange(keys.BATCHES, 0, -1)[0].decode()
    record = real_client.hgetall(keys.batch_key(batch_id))
    assert record[b"state"] == b"submitted" and record[b"total"] == b"4"


def test_worker_serves_user_task_modules_named_in_the_environment(
    redis_url: str, start_worker: WorkerFactory, real_client: redis.Redis, tmp_path: Path
) -> None:
    start_worker(env={**USER_ENV, "DW_TASK_MODULES": "tests.usertasks"})
    wait_offered(real_client, "images.resize")
    batch = tmp_path / "tasks.jsonl"
    rows = [
        {"task": "images.resize", "args": ["a.png", 640]},
        {"task": "images.resize", "args": ["a.png"], "kwargs": {"width": "wide"}},
        {"task": "usertasks.double", "args": [21]},
    ]
    batch.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = run_cli("submit", str(batch), "--json", "--ordered", env={"REDIS_URL": redis_url})
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[0]["result"] == "a.png@640w"
    assert records[1]["error"]["type"] == "InvalidArguments" and "'width' must be int" in records[1]["error"]["message"]
    assert records[2]["result"] == 42
    assert done.returncode == 1


def test_a_task_module_that_cannot_be_imported_stops_the_worker(redis_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker", "--tasks", "no_such_module_xyz", "--burst"],
        env={"REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "no_such_module_xyz" in done.stderr


def test_status_watch_shows_tasks_done_per_worker(
    redis_url: str, start_worker: WorkerFactory, real_client: redis.Redis
) -> None:
    start_worker("--name", "watched")
    wait_offered(real_client, "add")
    done = run_cli("submit", "-", stdin="".join(f"add {i} 1\n" for i in range(30)), env={"REDIS_URL": redis_url})
    assert done.returncode == 0, done.stderr
    view = run_cli("status", "--watch", "--interval", "0.2", "--count", "2", env={"REDIS_URL": redis_url})
    assert view.returncode == 0, view.stderr
    assert view.stdout.count("workers: 1 live") == 2
    worker_lines = [line for line in view.stdout.splitlines() if line.strip().startswith("watched")]
    assert len(worker_lines) == 2 and all(" 30 " in line for line in worker_lines)
    assert "recent batches:" in view.stdout

    snapshot = json.loads(run_cli("status", "--json", env={"REDIS_URL": redis_url}).stdout)
    assert snapshot["workers"][0]["tasks_done"] == 30
    assert run_cli("status", "--json", "--watch", env={"REDIS_URL": redis_url}).returncode == 2


@pytest.mark.parametrize("serializer", [[], ["-S", "rq.serializers.JSONSerializer"]])
def test_rq_info_runs_against_our_queue(
    redis_url: str, serializer: list[str], start_worker: WorkerFactory, real_client: redis.Redis
) -> None:
    start_worker("--name", "busy-one", "--threads", "1")
    wait_offered(real_client, "sleep")
    lines = "sleep 2\nadd 1 2\nadd 3 4\n"
    done = run_cli("submit", "-", "--no-wait", "--chunk-size", "1", stdin=lines, env={"REDIS_URL": redis_url})
    assert done.returncode == 0, done.stderr
    rq = Path(sys.executable).parent / "rq"
    info = subprocess.run(
        [str(rq), "info", "--url", redis_url, *serializer],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert info.returncode == 0, info.stderr
    assert "tasks" in info.stdout and "busy-one" in info.stdout
