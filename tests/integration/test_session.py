"""Chunk size 1 end to end: a Session against a real redis-server and a real worker process."""

from __future__ import annotations

import pytest
import redis
from rq import Queue
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from common.settings import Settings
from dispatcher.session import Session
from tests.conftest import WorkerFactory

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


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

    queue = Queue(settings.queue, connection=real_client, serializer=JSONSerializer)
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    assert real_client.keys("rq:job:*") == []
    assert real_client.keys("rq:execution*") == []
    worker: dict[bytes, bytes] = real_client.hgetall("rq:worker:lean")  # type: ignore[assignment]
    assert worker[b"successful_job_count"] == b"51"
    assert worker[b"state"] == b"idle"
    assert b"current_job" not in worker
    assert real_client.hget(f"dw:batch:{session.batch_id}", "total") == b"51"
