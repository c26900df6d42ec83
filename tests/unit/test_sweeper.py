"""The sweeper's rule, its hand-back through RQ, its lease, and RQ maintenance under a held lock, on fakeredis."""

from __future__ import annotations

import time

import fakeredis
import pytest

from common import default_catalogue, keys
from common.jobdata import ChunkJobSerializer
from common.settings import Settings
from dispatcher.batch import SubmitOptions, submit_batch
from dispatcher.reader import read_tasks
from worker.handback import hand_back, hand_back_worker
from worker.job import SafeJob
from worker.runner import ChunkWorker
from worker.runtime import Runtime
from worker.sweeper import Started, Sweeper, abandoned, client_name

QUEUE = "tasks"
WIP = keys.rq_started_key(QUEUE)


def started(worker: str, entry: str = "job-0:e1") -> Started:
    return Started(QUEUE, entry, time.time() + 10, worker)


@pytest.mark.parametrize(
    ("connected", "pulsing", "advertised", "gone"),
    [
        (set(), set(), {"w": "w"}, True),  # no connection, no pulse: gone
        ({"w"}, set(), {"w": "w"}, False),  # a stalled process keeps its connections
        (set(), {"w"}, {"w": "w"}, False),  # a dropped connection: the worker pulses on and reconnects
        (set(), set(), {}, False),  # connections not named: only the heartbeat TTL decides
        ({"other"}, set(), {"w": "w"}, True),
    ],
)
def test_a_worker_is_gone_only_without_connection_and_without_pulse(
    connected: set[str], pulsing: set[str], advertised: dict[str, str], gone: bool
) -> None:
    assert bool(abandoned([started("w")], connected, pulsing, advertised)) is gone


def test_client_names_carry_no_spaces() -> None:
    assert client_name("Worker 0") == "Worker_0"
    assert client_name("host-12") == "host-12"


def _start_chunk(client: fakeredis.FakeRedis, settings: Settings, worker: str) -> tuple[str, str]:
    """Enqueue one chunk and mark it started by `worker`, as a worker's start script does."""
    items = read_tasks(["add 1 2", "add 3 4"], "text", settings.max_arg_bytes)
    batch = submit_batch(client, settings, items, SubmitOptions(2, wait=False), lambda r: None).batch_id
    job_id = keys.chunk_job_id(batch, 0)
    assert client.lpop(keys.rq_queue_key(QUEUE)) == job_id.encode()
    entry = f"{job_id}:exec1"
    client.zadd(WIP, {entry: time.time() + settings.heartbeat_ttl})
    client.hset(keys.rq_execution_key_of_entry(entry), mapping={"worker_name": worker})
    client.hset(keys.rq_job_key(job_id), mapping={"status": "started", "worker_name": worker})
    return job_id, entry


def test_hand_back_requeues_through_rq_once(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    job_id, entry = _start_chunk(fake_client, fake_settings, "dead")
    assert hand_back(fake_client, QUEUE, [entry], SafeJob, ChunkJobSerializer) == 1
    assert fake_client.lrange(keys.rq_queue_key(QUEUE), 0, -1) == [job_id.encode()]
    assert fake_client.zcard(WIP) == 0
    assert hand_back(fake_client, QUEUE, [entry], SafeJob, ChunkJobSerializer) == 0  # gone: nothing to do
    assert fake_client.llen(keys.rq_queue_key(QUEUE)) == 1


def test_a_claimed_entry_is_handed_back_by_one_process_only(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    _job_id, entry = _start_chunk(fake_client, fake_settings, "dead")
    fake_client.set(keys.handback_key(entry), 1)  # another sweeper (or the supervisor) is on it
    assert hand_back(fake_client, QUEUE, [entry], SafeJob, ChunkJobSerializer) == 0
    assert fake_client.zcard(WIP) == 1


def test_hand_back_worker_finds_the_chunks_of_one_worker(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    job_id, _entry = _start_chunk(fake_client, fake_settings, "dead")
    _start_chunk(fake_client, fake_settings, "alive")
    fake_client.hset(keys.rq_worker_key("dead"), mapping={"birth": "2026-01-01T00:00:00Z"})
    fake_client.sadd(keys.RQ_WORKERS, keys.rq_worker_key("dead"))
    assert hand_back_worker(fake_client, "dead", SafeJob, ChunkJobSerializer) == 1
    assert not fake_client.exists(keys.rq_worker_key("dead")) and not fake_client.sismember(
        keys.RQ_WORKERS, keys.rq_worker_key("dead")
    )
    assert fake_client.lrange(keys.rq_queue_key(QUEUE), 0, -1) == [job_id.encode()]
    assert fake_client.zcard(WIP) == 1  # the live worker's chunk stays started


def test_the_sweep_hands_back_an_expired_heartbeat_and_keeps_a_live_one(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    expired, entry = _start_chunk(fake_client, fake_settings, "silent")
    fake_client.zadd(WIP, {entry: time.time() - 1})  # its heartbeat lapsed: RQ's rule
    _live, live_entry = _start_chunk(fake_client, fake_settings, "busy")
    fake_client.hset(keys.RQ_WORKER_PREFIX + "busy", keys.CONNECTION_FIELD, "busy")
    fake_client.set(keys.pulse_key("busy"), 1)
    sweeper = Sweeper(fake_client, "sweeper", SafeJob, ChunkJobSerializer)
    assert sweeper.sweep() == 1
    assert fake_client.lrange(keys.rq_queue_key(QUEUE), 0, -1) == [expired.encode()]
    assert fake_client.zrange(WIP, 0, -1) == [live_entry.encode()]


def test_the_sweep_hands_back_a_worker_with_no_connection_and_no_pulse(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    job_id, _entry = _start_chunk(fake_client, fake_settings, "killed")
    fake_client.hset(keys.RQ_WORKER_PREFIX + "killed", mapping={keys.CONNECTION_FIELD: "killed", "birth": "b"})
    fake_client.set(keys.pulse_key("killed"), 1)
    sweeper = Sweeper(fake_client, "sweeper", SafeJob, ChunkJobSerializer)
    sweeper.sweep()  # it pulses (a dropped connection): kept
    assert fake_client.zcard(WIP) == 1 and fake_client.llen(keys.rq_queue_key(QUEUE)) == 0
    fake_client.delete(keys.pulse_key("killed"))  # and now its pulse stopped too
    sweeper.sweep()
    assert fake_client.zcard(WIP) == 0
    assert fake_client.lrange(keys.rq_queue_key(QUEUE), 0, -1) == [job_id.encode()]
    assert fake_client.exists(keys.RQ_WORKER_PREFIX + "killed") == 0  # unregistered


def _worker(client: fakeredis.FakeRedis, settings: Settings, name: str) -> ChunkWorker:
    worker = ChunkWorker(Runtime(settings, default_catalogue, name), client, [QUEUE])
    worker.register_birth()
    worker.stop_heartbeat()  # ticks are sent by hand below
    return worker


def test_one_worker_of_the_fleet_holds_the_sweeper_lease(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings
) -> None:
    first, second = _worker(fake_client, fake_settings, "a"), _worker(fake_client, fake_settings, "b")
    replies = [first.beat(), second.beat(), first.beat(), second.beat()]
    assert [r.holder for r in replies if r is not None] == [True, False, True, False]
    fake_client.delete(keys.SWEEPER_LEASE)  # its holder died: the lease lapsed
    reply = second.beat()
    assert reply is not None and reply.holder
    assert fake_client.get(keys.SWEEPER_LEASE) == b"b"


def test_a_tick_counts_started_chunks_and_workers(fake_client: fakeredis.FakeRedis, fake_settings: Settings) -> None:
    worker = _worker(fake_client, fake_settings, "a")
    _worker(fake_client, fake_settings, "b")
    _start_chunk(fake_client, fake_settings, "b")
    reply = worker.beat()
    assert reply is not None and (reply.started, reply.workers) == (1, 2)
    quick = worker.beat(renew=False)  # a pulse-only tick does not count workers
    assert quick is not None and (quick.started, quick.workers) == (1, 0)
    fake_client.delete(keys.rq_started_key("tasks"))
    calm = worker.beat()  # nor does a tick while nothing is started
    assert calm is not None and (calm.started, calm.workers) == (0, 0)


def test_registry_maintenance_runs_once_per_interval_for_the_fleet(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[str] = []
    monkeypatch.setattr("worker.runner.clean_registries", lambda queue, handlers: runs.append(queue.name))
    first, second = _worker(fake_client, fake_settings, "a"), _worker(fake_client, fake_settings, "b")
    first.clean_registries()
    second.clean_registries()
    first.clean_registries()
    assert sorted(runs) == sorted(first.queue_names())  # each queue once, by the first worker only
    lock = keys.RQ_PREFIX + f"clean_registries:{QUEUE}"
    assert 0 < fake_client.ttl(lock) <= first.maintenance_interval  # held for the interval, not released


def test_the_idle_loop_leaves_the_registration_to_the_heartbeat_thread(
    fake_client: fakeredis.FakeRedis, fake_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr("worker.resilience.ResilientLoop.heartbeat", lambda self, *args: calls.append(args))
    worker = ChunkWorker(Runtime(fake_settings, default_catalogue, "a"), fake_client, [QUEUE])
    worker.heartbeat()  # no heartbeat thread yet: RQ's own
    worker.register_birth()  # starts the heartbeat thread
    try:
        worker.heartbeat()  # the idle loop's: left to the thread
        worker.heartbeat(30)  # a job's: RQ's own
    finally:
        worker.stop_heartbeat()
    assert calls == [(None, None), (30, None)]
    assert worker.connection.connection_pool.connection_kwargs.get("client_name") == "a"
