"""The pipelined worker bookkeeping (worker/lean.py) leaves Redis exactly as RQ's own methods do."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from common import default_catalogue, keys
from common.settings import Settings
from dispatcher.session import Session
from worker import runtime as runtime_module
from worker.job import SafeJob
from worker.runner import ChunkWorker, FastChunkWorker
from worker.runtime import Runtime


def _keys(client: fakeredis.FakeRedis) -> set[str]:
    return {key.decode() for key in client.keys("*")}


def _run(
    worker_class: Any, client: fakeredis.FakeRedis, settings: Settings
) -> tuple[list[Any], set[str], dict[str, Any]]:
    runtime = Runtime(settings, default_catalogue, "w1")
    runtime_module.configure(runtime)
    with Session(client, settings, batch_id="b1") as session:
        indexes = [session.submit("add", [i, i]) for i in range(3)] + [session.submit("divide", [1, 0])]
        worker = worker_class(runtime, client, [settings.queue])
        stats: dict[str, Any] = {}
        original = worker.register_death

        def record_then_die() -> None:  # the worker hash goes with the worker: read it first
            stats.update({k.decode(): v.decode() for k, v in client.hgetall(worker.key).items()})
            original()

        worker.register_death = record_then_die
        # No heartbeat thread: its ticks (pulse, sweeper lease) come on its own clock, on both paths.
        worker._start_heartbeat_thread = lambda: None
        worker.work(burst=True)
        results = [session.result(index, timeout=5) for index in indexes]
    return results, _keys(client), stats


@pytest.fixture
def settings(fake_settings: Settings) -> Settings:
    return fake_settings


def test_lean_and_plain_bookkeeping_leave_the_same_keys(settings: Settings) -> None:
    lean_client, plain_client = fakeredis.FakeRedis(), fakeredis.FakeRedis()
    lean_results, lean_keys, lean_stats = _run(FastChunkWorker, lean_client, settings)
    plain_results, plain_keys, plain_stats = _run(ChunkWorker, plain_client, settings)

    assert [(r.ok, r.value) for r in lean_results] == [(True, 0), (True, 2), (True, 4), (False, None)]
    assert [(r.ok, r.value) for r in plain_results] == [(r.ok, r.value) for r in lean_results]
    assert lean_results[3].error_type == "ZeroDivisionError"
    assert lean_keys == plain_keys
    assert not any(key.startswith((keys.RQ_JOB_PREFIX, keys.RQ_PREFIX + "execution")) for key in lean_keys)
    for stats in (lean_stats, plain_stats):
        assert stats["successful_job_count"] == "4"
        assert stats["state"] == "idle"
        assert "current_job" not in stats
    queue = Queue(settings.queue, connection=lean_client, serializer=JSONSerializer)
    assert StartedJobRegistry(queue=queue).get_job_ids() == []


def test_a_refused_job_still_fails_through_rqs_own_path(fake_client: fakeredis.FakeRedis, settings: Settings) -> None:
    queue = Queue(settings.queue, connection=fake_client, serializer=JSONSerializer, job_class=SafeJob)
    planted = queue.enqueue("os.getcwd", job_id="planted")
    runtime = Runtime(settings, default_catalogue, "w2")
    runtime_module.configure(runtime)
    with Session(fake_client, settings) as session:
        index = session.submit("add", [1, 2])
        FastChunkWorker(runtime, fake_client, [settings.queue]).work(burst=True)
        assert session.result(index, timeout=5).value == 3
    assert FailedJobRegistry(queue=queue).get_job_ids() == [planted.id]
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
