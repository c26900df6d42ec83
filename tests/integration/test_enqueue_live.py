"""Chunk jobs written by the enqueue script, on a real redis-server: RQ's tools read them, real workers run them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from common import keys
from tests.conftest import ROOT, WorkerFactory, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def rq_info(redis_url: str, *options: str) -> str:
    rq = Path(sys.executable).parent / "rq"
    done = subprocess.run(
        [str(rq), "info", "--raw", "--only-queues", "--url", redis_url, *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_rq_reads_the_queued_chunks_and_a_real_worker_runs_them(
    redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory
) -> None:
    lines = "".join(f"add {i} {i}\n" for i in range(5)) + "divide 1 0\n"
    queued = run_cli(
        "submit", "-", "--no-wait", "--no-check", "--chunk-size", "2", stdin=lines, env={"REDIS_URL": redis_url}
    )
    assert queued.returncode == 0, queued.stderr
    batch_id = queued.stdout.strip()

    for options in ([], ["-S", "rq.serializers.JSONSerializer"]):
        assert "queue tasks 3, 0 executing, 0 finished, 0 failed" in rq_info(redis_url, *options)
    queue = Queue("tasks", connection=real_client, serializer=JSONSerializer)
    assert queue.job_ids == [f"{batch_id}-{n}" for n in range(3)]
    for job in queue.get_jobs():
        assert isinstance(job, Job) and job.func_name == "worker.chunk.run_chunk"
        assert job.get_status() == JobStatus.QUEUED and job.retries_left == 3 and job.timeout == -1

    start_worker("--name", "live")
    done = run_cli("results", batch_id, "--json", "--timeout", "60", env={"REDIS_URL": redis_url})
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted((row["index"], row["result"]) for row in rows if row["ok"]) == [(i, 2 * i) for i in range(5)]
    assert [row["error"]["type"] for row in rows if not row["ok"]] == ["ZeroDivisionError"]
    assert all(row["worker"] == "live" for row in rows)
    # result_ttl=0: a finished chunk's job hash is gone, nothing is left executing or failed.
    assert real_client.keys(keys.RQ_JOB_PREFIX + "*") == []
    assert StartedJobRegistry(queue=queue).get_job_ids() == [] and queue.failed_job_registry.count == 0
    assert "queue tasks 0, 0 executing" in rq_info(redis_url)


def test_a_redis_without_the_script_cached_still_takes_a_session_call(
    redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory
) -> None:
    from common.settings import Settings
    from dispatcher.session import Session

    start_worker("--name", "flushed")
    with Session(real_client, Settings.from_env(redis_url=redis_url)) as session:
        assert session.call("add", 1, 2, timeout=30).value == 3
        real_client.script_flush()  # what a Redis restart does to the script cache
        assert session.call("add", 3, 4, timeout=30).value == 7
        index = session.submit("add", [5, 6])  # the single-call path: EVALSHA, then EVAL on NOSCRIPT
        real_client.script_flush()
        assert session.result(index, timeout=30).value == 11
        assert session.submit("add", [7, 8]) == 3 and session.result(3, timeout=30).value == 15


def test_a_session_outlives_redis_dropping_its_connections(
    redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory
) -> None:
    from common.connection import connect
    from common.settings import Settings
    from dispatcher.session import Session

    start_worker("--name", "steady")
    settings = Settings.from_env(redis_url=redis_url)
    client = connect(settings)
    with Session(client, settings) as session:
        assert session.call("add", 1, 1, timeout=30).value == 2
        for i in range(3):  # Redis drops the session's own connection (idle timeout, failover, CLIENT KILL)
            (held,) = session._direct.round_trip([["CLIENT", "ID"]])
            assert real_client.client_kill_filter(_id=held) == 1
            assert session.call("add", i, 10, timeout=30).value == i + 10
        assert session.call("add", 5, 5, timeout=30).value == 10
    client.close()
    assert real_client.hget(f"dw:batch:{session.batch_id}", "total") == b"5"
