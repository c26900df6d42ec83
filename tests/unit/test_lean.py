"""The worker's quick per-job path (worker/lean.py): three round trips a job, RQ's records, RQ's failures."""

from __future__ import annotations

import json
import zlib
from typing import Any

import fakeredis
import pytest
import redis
from rq import Queue, Retry
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from common import keys
from common.cancel import CANCELLED_FIELD
from common.jobdata import ORJSON_MARK
from common.settings import Settings
from common.wire import encode_chunk
from dispatcher.session import Session
from tests.conftest import builtin_catalogue
from worker import lean
from worker import runtime as runtime_module
from worker.job import SafeJob
from worker.lean_restore import JobFactory
from worker.runner import FastChunkWorker
from worker.runtime import Runtime


@pytest.fixture
def settings(fake_settings: Settings) -> Settings:
    # No heartbeat-thread sweeps during a test run: they would add round trips of their own.
    return fake_settings.with_overrides(heartbeat_interval=60, heartbeat_ttl=120)


def _worker(client: fakeredis.FakeRedis, settings: Settings, name: str = "w") -> FastChunkWorker:
    runtime = Runtime(settings, builtin_catalogue(), name)  # one queue: the single-list dequeue
    runtime_module.configure(runtime)
    return FastChunkWorker(runtime, client, [settings.queue])


def _sends_while_working(
    client: fakeredis.FakeRedis, settings: Settings, jobs: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, list[Any]]:
    """Round trips a burst worker sends to serve `jobs` queued chunk jobs, and their results."""
    with Session(client, settings) as session:
        indexes = [session.submit("add", [i, i]) for i in range(jobs)]
        worker = _worker(client, settings)
        # No heartbeat thread: its ticks (pulses while a chunk runs) come on its own clock.
        worker._start_heartbeat_thread = lambda: None  # type: ignore[method-assign]
        sent = [0]
        original = redis.connection.AbstractConnection.send_packed_command

        def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
            sent[0] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
        worker.work(burst=True)
        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", original)
        results = [session.result(index, timeout=5) for index in indexes]
    return sent[0], results


def test_a_chunk_job_costs_three_round_trips(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Time-based throttles off: every repeated idle heartbeat and suspension check is skipped.
    monkeypatch.setattr(lean, "HEARTBEAT_MIN_INTERVAL", 1e9)
    monkeypatch.setattr(lean, "SUSPENSION_CHECK_INTERVAL", 1e9)
    few, few_results = _sends_while_working(fakeredis.FakeRedis(), settings, 2, monkeypatch)
    many, many_results = _sends_while_working(fakeredis.FakeRedis(), settings, 12, monkeypatch)
    assert [r.value for r in few_results] == [0, 2]
    assert [r.value for r in many_results] == [2 * i for i in range(12)]
    assert many - few == 3 * 10  # dequeue, start script, finish script (with the results)


@pytest.mark.parametrize("form", ["as written", "zlib", "json, unmarked"])
def test_job_data_in_every_form_runs(fake_client: fakeredis.FakeRedis, settings: Settings, form: str) -> None:
    """The dispatcher writes orjson-marked JSON; RQ's own enqueue writes zlib'd JSON; both must run."""
    with Session(fake_client, settings) as session:
        index = session.submit("add", [20, 22])
        job_key = keys.rq_job_key(keys.chunk_job_id(session.batch_id, 0))
        raw: bytes = fake_client.hget(job_key, "data")  # type: ignore[assignment]
        call = json.loads(raw)
        if form == "zlib":
            fake_client.hset(job_key, "data", zlib.compress(raw))
        elif form == "json, unmarked":
            call[2][0].pop(ORJSON_MARK, None)
            fake_client.hset(job_key, "data", json.dumps(call))
        _worker(fake_client, settings).work(burst=True)
        assert session.result(index, timeout=5).value == 42


def test_a_batch_cancelled_before_its_chunk_starts_is_answered_not_run(
    fake_client: fakeredis.FakeRedis, settings: Settings
) -> None:
    with Session(fake_client, settings) as session:
        index = session.submit("add", [1, 1])
        fake_client.hset(keys.batch_key(session.batch_id), CANCELLED_FIELD, "1")
        _worker(fake_client, settings).work(burst=True)
        result = session.result(index, timeout=5)
    assert (result.ok, result.error_type) == (False, "Cancelled")


def test_a_failing_chunk_job_goes_through_rqs_failure_path_and_retry(
    fake_client: fakeredis.FakeRedis, settings: Settings
) -> None:
    queue = Queue(settings.queue, connection=fake_client, serializer=JSONSerializer, job_class=SafeJob)
    payload = encode_chunk("b9", 0, 60, [])
    payload["v"] = 99  # a version this worker does not read: the job itself fails
    job = queue.enqueue(keys.CHUNK_FUNCTION, payload, job_id="b9-0", retry=Retry(max=1), result_ttl=0, failure_ttl=60)
    _worker(fake_client, settings).work(burst=True)
    assert FailedJobRegistry(queue=queue).get_job_ids() == [job.id]
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    job.refresh()
    assert job.retries_left == 0  # ran twice: RQ's Retry re-queued it once
    latest = job.latest_result()
    assert latest is not None and "unsupported chunk wire version" in (latest.exc_string or "")


def _dispatcher_hash(client: fakeredis.FakeRedis, settings: Settings) -> dict[bytes, bytes]:
    with Session(client, settings, batch_id="h1") as session:
        session.submit("add", [1, 2])
    fields: dict[bytes, bytes] = client.hgetall(keys.rq_job_key("h1-0"))  # type: ignore[assignment]
    return fields


def _state(job: Job) -> dict[str, Any]:
    state = {k: v for k, v in vars(job).items() if k not in ("log", "connection")}
    state["args"], state["func_name"] = job.args, job.func_name
    return state


@pytest.mark.parametrize(
    "change",
    [
        {},
        {b"data": "zlib"},  # RQ's own enqueue compresses; the dispatcher's writer does not
        {b"created_at": None, b"status": b"started", b"started_at": b"2026-01-02T03:04:05.000006Z"},
        {b"timeout": b"1h"},  # RQ's own parser reads this
        {b"meta": json.dumps({"k": 1}).encode()},  # not a plain field: RQ's restore
        {b"status": b"bogus"},  # refused by InertJob, as before
        {b"success_callback_name": b"os.system"},  # refused by InertJob, as before
        {b"data": b"\x80\x04pickle"},  # refused when its data is read, as before
        {b"enqueue_at_front": b""},  # RQ's restore fails on it: refused, as before
    ],
)
def test_the_quick_restore_reads_a_hash_as_rqs_restore_does(
    fake_client: fakeredis.FakeRedis, settings: Settings, change: dict[bytes, Any]
) -> None:
    fields = _dispatcher_hash(fake_client, settings)
    for name, value in change.items():
        if value is None:
            fields.pop(name)
        elif value == "zlib":
            fields[name] = zlib.compress(fields[name])
        else:
            fields[name] = value
    quick = JobFactory(SafeJob, fake_client, JSONSerializer).restore("h1-0", fields)
    reference = SafeJob("h1-0", connection=fake_client, serializer=JSONSerializer)
    reference.restore(fields)
    if b"created_at" not in fields:  # both take "now", a moment apart
        quick.created_at = reference.created_at
    assert _state(quick) == _state(reference)


def test_the_publisher_hands_a_fast_chunks_last_rows_to_the_success_step(fake_client: fakeredis.FakeRedis) -> None:
    from worker.publish import FLUSH_EVERY_RESULTS, ResultPublisher, ResultWrite

    handed: list[ResultWrite] = []
    publisher = ResultPublisher(fake_client, "p1", 0, 60, "w", handover=handed.append)
    publisher.add_rows([[0, None, "add", [1, 1], {}, 1, 2, 0.01]], 0, {})  # the serial loop's last call
    assert fake_client.xlen(keys.results_key("p1")) == 0
    publisher.finish()
    assert [w.counters for w in handed] == [
        ((keys.batch_key("p1"), "done", 1, True), (keys.rq_worker_key("w"), "dw_tasks_done", 1, False))
    ]
    assert json.loads(handed[0].fields["r"])[0][6] == 2

    plain = ResultPublisher(fake_client, "p2", 0, 60, "w")  # no handover offered: written at once
    plain.add_rows([[0, None, "add", [1, 1], {}, 1, 2, 0.01]], 0, {})
    assert fake_client.xlen(keys.results_key("p2")) == 1

    big = ResultPublisher(fake_client, "p3", 0, 60, "w", handover=handed.append)
    big.add_rows([[i, None, "add", [i, i], {}, 1, 2 * i, 0.01] for i in range(FLUSH_EVERY_RESULTS)], 0, {})
    assert fake_client.xlen(keys.results_key("p3")) == 1  # a full group goes out while the chunk runs on
    big.finish()
    assert len(handed) == 1  # nothing left to hand over
