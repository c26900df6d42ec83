"""End to end: the real `dispatcher` CLI against a real redis-server and real worker processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from common import keys
from tests.conftest import WorkerFactory, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_submit_a_file_and_get_every_result_once(redis_url: str, start_worker: WorkerFactory, tmp_path: Path) -> None:
    start_worker("--name", "alpha")
    start_worker("--name", "beta")
    batch = tmp_path / "tasks.txt"
    batch.write_text("# a batch\n" + "".join(f"add {i} {i}\n" for i in range(3000)) + "divide 1 0\n")
    done = run_cli("submit", str(batch), "--json", "--chunk-size", "50", env={"REDIS_URL": redis_url})

    assert done.returncode == 1, done.stderr  # one task failed
    records = json_lines(done.stdout)
    by_index = {r["index"]: r for r in records}
    assert len(records) == len(by_index) == 3001
    assert all(by_index[i]["ok"] and by_index[i]["result"] == 2 * i for i in range(3000))
    assert by_index[3000]["error"] == {"type": "ZeroDivisionError", "message": "division by zero"}
    assert {r["worker"] for r in records} == {"alpha", "beta"}
    assert "3001 tasks, 3000 ok, 1 failed" in done.stderr


def test_stdin_text_and_human_output(redis_url: str, start_worker: WorkerFactory) -> None:
    start_worker()
    done = run_cli(
        "submit", "-", "--ordered", stdin='add 10 5\nmultiply 7 8\necho "hi there"\n', env={"REDIS_URL": redis_url}
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Task 1: add 10 5 = 15 (by ")
    assert lines[1].startswith("Task 2: multiply 7 8 = 56 (by ")
    assert lines[2].startswith("Task 3: echo hi there = hi there (by ")


def test_json_lines_input_keeps_user_ids_in_input_order(
    redis_url: str, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    start_worker("--threads", "4")
    batch = tmp_path / "tasks.jsonl"
    rows = [{"task": "sleep", "args": [0.05 * (5 - i)], "id": f"job-{i}"} for i in range(5)]
    rows.append({"task": "power", "args": [10, 10**9], "id": "too-big"})
    batch.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{oops\n")
    done = run_cli("submit", str(batch), "--json", "--ordered", env={"REDIS_URL": redis_url})
    records = json_lines(done.stdout)
    assert [r["id"] for r in records] == [f"job-{i}" for i in range(5)] + ["too-big", None]
    assert records[5]["error"]["type"] == "LimitExceeded"  # type: ignore[index]
    assert records[6]["error"]["type"] == "MalformedInput"  # type: ignore[index]
    assert "line 7" in records[6]["error"]["message"]  # type: ignore[index]
    assert done.returncode == 1


def test_no_wait_then_reattach_by_batch_id(redis_url: str, start_worker: WorkerFactory, tmp_path: Path) -> None:
    batch = tmp_path / "tasks.txt"
    batch.write_text("".join(f"fib {i}\n" for i in range(200)))
    # --no-check: the workers come later
    submitted = run_cli("submit", str(batch), "--no-wait", "--no-check", env={"REDIS_URL": redis_url})
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.strip()
    start_worker()
    for _ in range(2):  # results outlive the reader: a second reader sees them all again
        fetched = run_cli("results", batch_id, "--json", env={"REDIS_URL": redis_url})
        assert fetched.returncode == 0, fetched.stderr
        records = json_lines(fetched.stdout)
        assert sorted(r["index"] for r in records) == list(range(200))  # type: ignore[type-var]
    status = run_cli("status", "--json", env={"REDIS_URL": redis_url})
    snapshot = json.loads(status.stdout)
    assert snapshot["batches"][0]["batch_id"] == batch_id
    assert snapshot["batches"][0]["state"] == "finished"
    assert len(snapshot["workers"]) == 1 and "add" in snapshot["workers"][0]["tasks"]


def test_unreachable_redis_exits_3_without_leaking_the_password(tmp_path: Path) -> None:
    batch = tmp_path / "tasks.txt"
    batch.write_text("add 1 2\n")
    url = "redis://:s3cret-pw@127.0.0.1:1/0"
    for args in (["submit", str(batch)], ["status"], ["results", "abc"]):
        done = run_cli(*args, env={"REDIS_URL": url})
        assert done.returncode == 3, (args, done.stderr)
        assert "redis://:***@127.0.0.1:1/0" in done.stderr
        assert "s3cret-pw" not in done.stderr + done.stdout


def test_strict_refuses_the_whole_batch_before_enqueueing(redis_url: str, tmp_path: Path) -> None:
    batch = tmp_path / "tasks.txt"
    batch.write_text("add 1 2\nadd 3 'oops\nadd 5 6\n")
    done = run_cli("submit", str(batch), "--strict", env={"REDIS_URL": redis_url})
    assert done.returncode == 2
    assert "line 2" in done.stderr
    client = redis.Redis.from_url(redis_url)
    assert client.zcard(keys.BATCHES) == 0 and client.llen(keys.rq_queue_key("tasks")) == 0


def test_timeout_exits_4_and_names_the_batch(redis_url: str, tmp_path: Path) -> None:
    batch = tmp_path / "tasks.txt"
    batch.write_text("add 1 2\n")
    done = run_cli("submit", str(batch), "--timeout", "0.5", "--no-check", env={"REDIS_URL": redis_url})
    assert done.returncode == 4
    batch_id = redis.Redis.from_url(redis_url).zrange(keys.BATCHES, 0, -1)[0].decode()
    assert f"dispatcher results {batch_id}" in done.stderr


def test_usage_errors_exit_2(redis_url: str) -> None:
    assert run_cli("submit").returncode == 2
    assert run_cli("submit", "/no/such/file").returncode == 2
    assert run_cli("nosuchcommand").returncode == 2
    assert run_cli("results", "nope", env={"REDIS_URL": redis_url}).returncode == 2


def test_every_command_has_help() -> None:
    for args in ([], ["submit"], ["results"], ["status"], ["run"], ["demo"]):
        done = run_cli(*args, "--help")
        assert done.returncode == 0 and "Usage:" in done.stdout, args


def test_worker_warm_shutdown_on_sigterm(start_worker: WorkerFactory) -> None:
    worker = start_worker()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0


def test_worker_refuses_bad_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker", "--tasks", "no.such.module"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "cannot import task module" in done.stderr
