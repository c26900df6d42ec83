"""RQ's own tools keep working on our queues, chunk jobs and workers, under whichever RQ is installed:
`rq info`, `rq requeue --all` on our failed chunks, `rq empty`, and rq-dashboard through `dispatcher dashboard`."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pytest
import redis

from common import keys
from tests.conftest import ROOT, WorkerFactory, run_cli
from tests.support import in_ci, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def rq(redis_url: str, *args: str) -> str:
    """Run RQ's own command line (with our JSON jobs' serializer); its output."""
    command = [str(Path(sys.executable).parent / "rq"), *args, "--url", redis_url, "-S", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def submit(redis_url: str, lines: str, *options: str, queue: str = "tasks") -> str:
    queued = run_cli(
        "submit", "-", "--no-wait", "--no-check", *options, stdin=lines, env={"REDIS_URL": redis_url, "DW_QUEUE": queue}
    )
    assert queued.returncode == 0, queued.stderr
    return queued.stdout.strip()


def break_chunk(client: redis.Redis, job_id: str, version: int) -> None:
    """Set a chunk's payload version: one no worker reads makes the chunk job itself fail."""
    job_key = keys.rq_job_key(job_id)
    raw: bytes = client.hget(job_key, "data")  # type: ignore[assignment]
    with contextlib.suppress(zlib.error):  # RQ's failure path saves the job back, zlib'd
        raw = zlib.decompress(raw)
    call = json.loads(raw)
    call[2][0]["v"] = version
    client.hset(job_key, "data", json.dumps(call))


def test_rq_info_requeue_all_and_empty_on_our_chunks(
    redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory
) -> None:
    batch_id = submit(redis_url, "add 1 2\nadd 3 4\n", "--chunk-size", "1")
    chunks = [keys.chunk_job_id(batch_id, n) for n in range(2)]
    versions = [json.loads(real_client.hget(keys.rq_job_key(c), "data"))[2][0]["v"] for c in chunks]  # type: ignore[arg-type]
    for chunk in chunks:
        break_chunk(real_client, chunk, 99)
    info = rq(redis_url, "info", "--raw", "--only-queues")
    assert "queue tasks 2" in info, info

    start_worker("--name", "tooled", env={"DW_JOB_RETRIES": "0"})
    failed = keys.rq_failed_key("tasks")
    wait_until(lambda: real_client.zcard(failed) == 2, 30, "both chunks to fail")
    info = rq(redis_url, "info", "--raw")
    assert "queue tasks 0" in info and "2 failed" in info, info
    assert "worker tooled" in info, info

    # Repaired, the failed chunks go back through `rq requeue --all`, and their tasks complete.
    for chunk, version in zip(chunks, versions, strict=True):
        break_chunk(real_client, chunk, version)
    requeued = rq(redis_url, "requeue", "--all", "--queue", "tasks")
    assert "Requeueing 2 jobs from failed queue" in requeued, requeued
    results = run_cli("results", batch_id, "--json", "--timeout", "60", env={"REDIS_URL": redis_url})
    assert results.returncode == 0, results.stdout + results.stderr
    rows = [json.loads(line) for line in results.stdout.splitlines()]
    assert sorted((row["ok"], row["result"]) for row in rows) == [(True, 3), (True, 7)]
    assert real_client.zcard(failed) == 0

    # `rq empty` on a queue of our chunks no worker serves: the queue and its jobs are gone.
    spare = submit(redis_url, "add 5 6\nadd 7 8\n", "--chunk-size", "1", queue="spare")
    assert real_client.llen(keys.rq_queue_key("spare")) == 2
    emptied = rq(redis_url, "empty", "spare")
    assert "2 jobs removed from spare queue" in emptied, emptied
    assert real_client.llen(keys.rq_queue_key("spare")) == 0
    assert not real_client.exists(keys.rq_job_key(keys.chunk_job_id(spare, 0)))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError):
        return None


def test_rq_dashboard_through_dispatcher_dashboard(
    redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory, tmp_path: Path
) -> None:
    if not in_ci():
        pytest.importorskip("rq_dashboard", reason="rq-dashboard is not installed (pip install -e '.[monitoring]')")
    batch_id = submit(redis_url, "sleep 3\nadd 1 2\n", "--chunk-size", "1")
    start_worker("--name", "on-the-dashboard")
    port = _free_port()
    with (tmp_path / "dashboard.log").open("wb") as log:
        options = ["--json", "--bind", "127.0.0.1", "--port", str(port), "--redis-url", redis_url]
        argv = [sys.executable, "-m", "dispatcher", "dashboard", *options]
        dashboard = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}/0/data"
        workers = wait_until(lambda: _get_json(f"{base}/workers.json"), 60, "the dashboard to answer")
        (worker,) = workers["workers"]
        assert worker["name"] == "on-the-dashboard"
        queues = _get_json(f"{base}/queues.json")
        assert "tasks" in {queue["name"] for queue in queues["queues"]}
        job = _get_json(f"{base}/job/{keys.chunk_job_id(batch_id, 1)}.json")
        assert job is not None and job["id"] == keys.chunk_job_id(batch_id, 1)
    finally:
        dashboard.terminate()
        dashboard.wait(30)
