"""Chunk size 1 end to end: a Session against a real redis-server and a real worker process."""

from __future__ import annotations

import pytest
import redis
from rq import Queue
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from common import keys
from common.settings import Settings
from dispatcher.session import Session
from tests.conftest import WorkerFactory
from tests.support import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def wait_idle(client: redis.Redis, *workers: str) -> None:
    """Wait until no worker is busy: a result is published before the worker's own bookkeeping of
    the job ends, and on a loaded machine the dispatcher can read it and get here first."""
    states = lambda: [client.hget(keys.rq_worker_key(name), "state") for name in workers]  # noqa: E731
    wait_until(lambda: b"busy" not in states(), 10, "the workers to be idle after their chunks' results")


def test_sequential_round_trips_leave_rq_bookkeeping_clean(
    redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory
) -> None:
    start_worker("--name", "lean")
    settings = Settings.from_env(redis_url=redis_url)
    with Session(real_client, settings) as session:
        for i in range(50):
            result = session.call("add", i, i, timeout=30)
            assert (result.ok, result.value, result.worker) == (True, 2 * i, "lean")
        failed = session.call("divide", 1, 0, timeout=30)
        assert (failed.ok, failed.error_type) == (False, "ZeroDivisionError")

    wait_idle(real_client, "lean")
    queue = Queue(settings.queue, connection=real_client, serializer=JSONSerializer)
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    assert real_client.keys(keys.RQ_JOB_PREFIX + "*") == []
    assert real_client.keys(keys.RQ_PREFIX + "execution*") == []
    assert real_client.llen(keys.rq_intermediate_key(settings.queue)) == 0  # BLMOVE's copy removed at start
    worker: dict[bytes, bytes] = real_client.hgetall(keys.rq_worker_key("lean"))  # type: ignore[assignment]
    assert worker[b"successful_job_count"] == b"51"
    assert worker[b"state"] == b"idle"
    assert b"current_job" not in worker
    assert real_client.hget(f"dw:batch:{session.batch_id}", "total") == b"51"


def test_a_chunk_longer_than_the_heartbeat_ttl_runs_once(
    redis_url: str, real_client: redis.Redis, start_worker: WorkerFactory
) -> None:
    # The worker's one heartbeat thread must keep the chunk's started-registry entry alive. If it did
    # not, the dispatcher's cleanup (every 0.5 s here, entries live 4 s) would re-queue the chunk
    # about 4 s in, the idle second worker would start it again at once, and it would still be
    # running (a 6 s task) when the first run's result arrives. Heartbeats every 0.5 s against a
    # 4 s lifetime leave a loaded machine 3.5 s of slack.
    beats = {"DW_HEARTBEAT_INTERVAL": "0.5", "DW_HEARTBEAT_TTL": "4"}
    start_worker("--name", "beating-a", env=beats)
    start_worker("--name", "beating-b", env=beats)
    settings = Settings.from_env(redis_url=redis_url, heartbeat_interval=0.5, heartbeat_ttl=4)
    with Session(real_client, settings) as session:
        result = session.call("sleep", 6, timeout=30)
    assert result.ok
    wait_idle(real_client, "beating-a", "beating-b")
    queue = Queue(settings.queue, connection=real_client, serializer=JSONSerializer)
    assert queue.count == 0
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    counts = [real_client.hget(keys.rq_worker_key(f"beating-{n}"), "successful_job_count") or b"0" for n in "ab"]
    states = [real_client.hget(keys.rq_worker_key(f"beating-{n}"), "state") for n in "ab"]
    assert sorted(counts) == [b"0", b"1"]
    assert states == [b"idle", b"idle"]
